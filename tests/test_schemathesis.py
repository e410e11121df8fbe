"""Property-based run of schemathesis over the whole OpenAPI of the live API (2 workers), as a
fan and as an admin, and over sign-up and login (the two operations those runs leave out, as
each valid call costs an Argon2 hash) as an anonymous client: no 5xx, responses conform to the
documented schemas and content types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, signup_and_login

pytestmark = pytest.mark.slow


def _run(
    live_server: LiveServer, token: str | None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    auth_only = "^/auth/(login|signup)$"
    if token is None:
        scope = ["--include-path-regex", auth_only]
    else:
        scope = ["-H", f"Authorization: Bearer {token}", "--exclude-path-regex", auth_only]
    return subprocess.run(
        [
            str(st),
            "run",
            f"{live_server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,negative_data_rejection",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "4",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            *scope,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "role",
    ["fan", "admin", "anonymous"],
)
async def test_no_server_errors_or_schema_violations(
    live_server: LiveServer, admin_headers: dict[str, str], role: str, tmp_path: Path
) -> None:
    token: str | None = None
    if role == "admin":
        token = admin_headers["Authorization"].split()[1]
    elif role == "fan":
        async with httpx.AsyncClient(base_url=live_server.url) as c:
            token = (await signup_and_login(c))["access_token"]
    result = _run(live_server, token, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
