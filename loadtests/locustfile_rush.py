"""A ticket rush against a deployed Ticket-Rush (kind or any cluster): `make kind-loadtest`.

Each simulated fan signs up, logs in, joins the sale's waiting room, polls its place (at the
interval the API recommends), books a seat with the admission token once admitted, pays, and
stops: one purchase per fan, as in a real rush. Every fan must end with a definite answer
(ticket, sold out or closed); the `rush` counters at the end say how many got which, and the run
ends once every fan has one (or at `-t`).

Settings (environment):
- LOADTEST_SALE_ID: an existing sale to rush. Without it, test start logs in as
  LOADTEST_ADMIN_EMAIL / LOADTEST_ADMIN_PASSWORD, puts LOADTEST_CONCERT_ID (default 1, from
  `ticket-rush seed`) on sale and creates a sale opening LOADTEST_OPENS_IN_S (default 20) seconds
  later at LOADTEST_RATE fans/s (default 50), so early fans land in the pre-queue.
- LOADTEST_MAX_WAIT_S: a fan gives up waiting after this long (default 600).
- LOADTEST_STRATEGY: a booking strategy to ask for; by default the server picks (a concert sold
  through a waiting room may answer 202 and book through the Kafka pipeline: the fan then polls
  `GET /bookings/requests/{id}` for the outcome, as a real client does).

    locust -f loadtests/locustfile_rush.py --headless -u 2000 -r 100 -t 5m --host http://127.0.0.1:18000
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent
import httpx
from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_RUNNING

PASSWORD = "rush-Fan-password-1"
FINAL_STATES = {"sold_out", "closed"}
outcomes: Counter[str] = Counter()
sale: dict[str, int] = {}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def prepare_sale(environment: Environment, **_: Any) -> None:
    with httpx.Client(base_url=environment.host or "", timeout=30) as client:
        if "LOADTEST_SALE_ID" in os.environ:
            existing = client.get(f"/sales/{int(os.environ['LOADTEST_SALE_ID'])}")
            existing.raise_for_status()
            sale["id"], sale["concert_id"] = existing.json()["id"], existing.json()["concert_id"]
            return
        login = client.post(
            "/auth/login",
            json={
                "email": os.environ["LOADTEST_ADMIN_EMAIL"],
                "password": os.environ["LOADTEST_ADMIN_PASSWORD"],
            },
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        concert_id = _env_int("LOADTEST_CONCERT_ID", 1)
        client.patch(
            f"/concerts/{concert_id}", json={"status": "on_sale"}, headers=admin
        ).raise_for_status()
        now = datetime.now(UTC)
        rate = float(os.environ.get("LOADTEST_RATE", "50"))
        created = client.post(
            "/sales",
            json={
                "concert_id": concert_id,
                "opens_at": (
                    now + timedelta(seconds=_env_int("LOADTEST_OPENS_IN_S", 20))
                ).isoformat(),
                "closes_at": (now + timedelta(hours=2)).isoformat(),
                "initial_rate": rate,
                "min_rate": min(rate, 5.0),
                "max_rate": max(rate, 500.0),
            },
            headers=admin,
        )
        created.raise_for_status()
        sale["id"], sale["concert_id"] = created.json()["id"], concert_id


def report(**_: Any) -> None:
    print("rush outcomes:", dict(sorted(outcomes.items())))


events.test_start.add_listener(prepare_sale)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(report)  # type: ignore[no-untyped-call]


class Fan(HttpUser):
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        email = f"rush-{uuid.uuid4().hex[:16]}@loadtest.example"
        self.client.post(
            "/auth/signup",
            json={"email": email, "password": PASSWORD, "display_name": "Rush fan"},
            name="/auth/signup",
        )
        login = self.client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}, name="/auth/login"
        )
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def finish(self, outcome: str) -> None:
        outcomes[outcome] += 1
        runner = self.environment.runner
        # Every fan has a definite answer: nothing is left to measure, end the run now.
        if (
            runner is not None
            and runner.state == STATE_RUNNING
            and sum(outcomes.values()) >= (runner.target_user_count or 0)
        ):
            gevent.spawn(runner.quit)
        raise StopUser()

    @task
    def rush(self) -> None:
        sale_id, concert_id = sale["id"], sale["concert_id"]
        self.client.post(f"/sales/{sale_id}/queue", headers=self.headers, name="/sales/[id]/queue")
        deadline = time.monotonic() + _env_int("LOADTEST_MAX_WAIT_S", 600)
        while time.monotonic() < deadline:
            status = self.client.get(
                f"/sales/{sale_id}/queue/me", headers=self.headers, name="/sales/[id]/queue/me"
            ).json()
            if status.get("state") == "admitted":
                self.book(concert_id, status["admission_token"])
            if status.get("state") in FINAL_STATES:
                self.finish(status["state"])
            time.sleep(min(float(status.get("poll_after_seconds") or 2.0), 10.0))
        self.finish("gave_up_waiting")

    def book(self, concert_id: int, token: str) -> None:
        headers = self.headers | {"X-Admission-Token": token}
        for _ in range(5):
            seats = self.client.get(
                f"/concerts/{concert_id}/seats",
                params={"status": "available", "limit": 50},
                name="/concerts/[id]/seats",
            ).json()["items"]
            if not seats:
                self.finish("sold_out")
            body: dict[str, Any] = {"seat_ids": [random.choice(seats)["id"]]}
            if strategy := os.environ.get("LOADTEST_STRATEGY"):
                body["strategy"] = strategy
            with self.client.post(
                f"/concerts/{concert_id}/bookings",
                json=body,
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
                name="/concerts/[id]/bookings",
                catch_response=True,
            ) as held:
                if held.status_code == 409:
                    held.success()  # someone was faster: try another seat
                    continue
            if held.status_code == 202:
                booking_id = self.outcome(held.json()["request_id"])
                if booking_id is None:
                    continue  # the pipeline refused this seat: try another
            else:
                booking_id = held.json()["id"]
            paid = self.client.post(
                f"/bookings/{booking_id}/pay", headers=self.headers, name="/bookings/[id]/pay"
            )
            self.finish("ticket" if paid.status_code == 200 else f"pay_{paid.status_code}")
        self.finish("no_seat_after_retries")

    def outcome(self, request_id: str) -> int | None:
        """Poll an accepted (202) booking request: its booking id, or None if refused."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = self.client.get(
                f"/bookings/requests/{request_id}",
                headers=self.headers,
                name="/bookings/requests/[id]",
            ).json()
            if result["status"] == "held":
                return int(result["booking_id"])
            if result["status"] == "rejected":
                if result.get("reason") == "sold-out":
                    self.finish("sold_out")
                return None
            time.sleep(0.3)
        self.finish("no_outcome")  # never silence: this is what the counters must show
        return None
