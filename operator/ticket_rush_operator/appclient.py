"""The app's admin HTTP API, as the operator uses it (it never touches the app's tables)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

PROBLEM_BASE = "https://ticketrush.io/problems/"


class AppUnavailable(Exception):
    """The app did not answer, or answered 5xx: retry later."""


class LoginRefused(AppUnavailable):
    """The app refused the operator's admin credentials: unusable until the Secret is fixed,
    so it is retried like an outage (Degraded), not treated as a bad sale."""


class AppRejected(Exception):
    """The app refused the request (4xx problem+json): retrying the same request will not help."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
        super().__init__(f"{status} {self.slug}: {problem.get('detail') or problem.get('title')}")


@dataclass(frozen=True, slots=True)
class SaleTerms:
    concert_id: int
    opens_at: datetime
    closes_at: datetime
    initial_rate: float
    min_rate: float
    max_rate: float
    max_active: int


class SaleApi:
    """Logs in as an admin (again after a 401) and calls the sale endpoints."""

    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, email: str, password: str
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._email = email
        self._password = password
        self._token: str | None = None

    async def _send(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._session.request(
                method, self._base + path, json=body, headers=headers
            ) as resp:
                data = await resp.json(content_type=None) if resp.status != 204 else None
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AppUnavailable(f"{method} {path}: {exc!r}") from exc
        if status >= 500:
            raise AppUnavailable(f"{method} {path}: HTTP {status}")
        return status, data

    async def _login(self) -> str:
        status, data = await self._send(
            "POST", "/auth/login", {"email": self._email, "password": self._password}
        )
        if status != 200:
            raise LoginRefused(f"POST /auth/login as {self._email}: HTTP {status}")
        token: str = data["access_token"]
        self._token = token
        return token

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = self._token or await self._login()
        status, data = await self._send(method, path, body, token)
        if status == 401:  # expired token: log in once more
            status, data = await self._send(method, path, body, await self._login())
        return status, data

    async def _expect(self, ok: int, method: str, path: str, body: Any = None) -> Any:
        status, data = await self._call(method, path, body)
        if status != ok:
            raise AppRejected(status, data if isinstance(data, dict) else {})
        return data

    async def ensure_sale(self, terms: SaleTerms) -> tuple[int, bool]:
        """Create the concert's sale, or adopt its live one; returns (sale id, adopted)."""
        body = {
            "concert_id": terms.concert_id,
            "opens_at": terms.opens_at.isoformat(),
            "closes_at": terms.closes_at.isoformat(),
            "initial_rate": terms.initial_rate,
            "min_rate": terms.min_rate,
            "max_rate": terms.max_rate,
            "max_active": terms.max_active,
        }
        status, data = await self._call("POST", "/sales", body)
        if status == 201:
            return int(data["id"]), False
        problem = data if isinstance(data, dict) else {}
        if status == 409 and problem.get("sale_id") is not None:
            return int(problem["sale_id"]), True
        raise AppRejected(status, problem)

    async def sale(self, sale_id: int) -> dict[str, Any]:
        data: dict[str, Any] = await self._expect(200, "GET", f"/sales/{sale_id}")
        return data

    async def stats(self, sale_id: int) -> dict[str, Any]:
        data: dict[str, Any] = await self._expect(200, "GET", f"/sales/{sale_id}/stats")
        return data

    async def open(self, sale_id: int) -> None:
        await self._transition(sale_id, "open")

    async def close(self, sale_id: int) -> None:
        await self._transition(sale_id, "close")

    async def _transition(self, sale_id: int, verb: str) -> None:
        status, data = await self._call("POST", f"/sales/{sale_id}:{verb}")
        if status == 200:
            return
        err = AppRejected(status, data if isinstance(data, dict) else {})
        # Someone (the admission worker, a person, an earlier try) already moved it on.
        if err.slug == "invalid-sale-state" or (verb == "close" and status == 404):
            return
        raise err

    async def set_rate(self, sale_id: int, rate: float) -> None:
        """Pin the rate (mode manual: the app's own controller stays out of the way)."""
        await self._expect(200, "PUT", f"/sales/{sale_id}/rate", {"rate": rate, "mode": "manual"})

    async def sold_seats(self, concert_id: int) -> int:
        data = await self._expect(200, "GET", f"/concerts/{concert_id}/availability")
        return sum(int(section["sold"]) for section in data["sections"])


def http_session(timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
