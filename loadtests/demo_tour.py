"""`make demo`: a scripted tour of the running local stack (until the rush demo replaces it).

Signs a fan up, logs in, rotates the refresh token, browses agencies → artists → concerts → seat
availability, shows cache hits and 304s, and writes `reports/demo/REPORT.md`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from app.core.config import get_settings
from app.devstack.stack import load_stack_env

console = Console()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _timed(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.request(method, url, **kwargs)
    return response, (time.perf_counter() - started) * 1000


def run(base_url: str, out: Path) -> list[tuple[str, str, str]]:
    steps: list[tuple[str, str, str]] = []

    def step(name: str, response: httpx.Response, note: str) -> None:
        if response.is_error:
            raise SystemExit(f"demo step failed: {name}: {response.status_code} {response.text}")
        steps.append((name, str(response.status_code), note))

    with httpx.Client(base_url=base_url, timeout=10) as c:
        email = f"fan-{uuid.uuid4().hex[:8]}@example.com"
        password = "lightstick-" + uuid.uuid4().hex[:8]
        step(
            "sign up",
            c.post(
                "/auth/signup", json={"email": email, "password": password, "display_name": "Blink"}
            ),
            email,
        )
        bad = c.post("/auth/login", json={"email": email, "password": "wrong-password"})
        steps.append(("login with a wrong password", str(bad.status_code), bad.json()["type"]))
        r = c.post("/auth/login", json={"email": email, "password": password})
        step("log in", r, "access + refresh token")
        tokens = r.json()
        r = c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        step("rotate refresh token", r, "new pair issued")
        replay = c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        steps.append(
            ("replay the old refresh token", str(replay.status_code), replay.json()["type"])
        )
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        step("who am I", c.get("/users/me", headers=auth), email)

        agencies = c.get("/agencies", params={"limit": 200})
        step(
            "agencies", agencies, ", ".join(a["name"] for a in agencies.json()["items"][:5]) + ", …"
        )
        concerts = c.get("/concerts", params={"limit": 20})
        step("concerts", concerts, f"{len(concerts.json()['items'])} listed")
        first = concerts.json()["items"][0]
        artist = first["artist"]
        members = c.get("/artists", params={"parent_id": artist["id"]})
        step(
            f"members of {artist['name']}",
            members,
            ", ".join(m["name"] for m in members.json()["items"]) or "—",
        )

        before = c.get("/metrics").text
        url = f"/concerts/{first['id']}"
        cold, cold_ms = _timed(c, "GET", url)
        step("concert page (first read)", cold, f"{cold_ms:.1f} ms")
        warm = [_timed(c, "GET", url)[1] for _ in range(50)]
        steps.append(
            ("concert page x50 (cached)", "200", f"median {statistics.median(warm):.2f} ms")
        )
        not_modified = c.get(url, headers={"If-None-Match": cold.headers["etag"]})
        steps.append(("revalidate with ETag", str(not_modified.status_code), "no body sent"))
        avail = c.get(f"{url}/availability")
        step(
            "seat availability",
            avail,
            " · ".join(
                f"{s['name']} {s['available']}/{s['total']}" for s in avail.json()["sections"]
            ),
        )
        after = c.get("/metrics").text
        hits = _metric(after, "tr_cache_requests_total", result="hit") - _metric(
            before, "tr_cache_requests_total", result="hit"
        )
        loads = _metric(after, "tr_cache_loads_total") - _metric(before, "tr_cache_loads_total")
        steps.append(("cache during the tour", "-", f"{hits:.0f} hits, {loads:.0f} database loads"))
        missing = c.get("/concerts/999999999")
        steps.append(
            (
                "a concert that does not exist",
                str(missing.status_code),
                missing.headers["content-type"],
            )
        )

    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Ticket-Rush demo tour",
        "",
        f"Run at {datetime.now(UTC).isoformat(timespec='seconds')} against {base_url}.",
        "",
        "| step | status | result |",
        "|---|---|---|",
        *(f"| {a} | {b} | {re.sub(r'[|]', '/', c_)} |" for a, b, c_ in steps),
        "",
    ]
    (out / "REPORT.md").write_text("\n".join(lines), encoding="utf-8")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/demo"))
    args = parser.parse_args()
    env = load_stack_env(get_settings().run_dir)
    base_url = f"http://127.0.0.1:{env['TR_API_PORT']}"
    steps = run(base_url, args.out)
    table = Table(title=f"Ticket-Rush demo tour ({base_url})")
    for col in ("step", "status", "result"):
        table.add_column(col)
    for row in steps:
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {args.out / 'REPORT.md'} · stop the stack with `make down`")


if __name__ == "__main__":
    main()
