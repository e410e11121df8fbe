"""Property-based run of schemathesis over the whole OpenAPI of the live API (2 workers), as a
fan and as an admin: no 5xx, responses conform to the documented schemas and content types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, signup_and_login

pytestmark = pytest.mark.slow


def _run(live_server: LiveServer, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
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
            "-H",
            f"Authorization: Bearer {token}",
            "--exclude-path-regex",
            "^/auth/(login|signup)$",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("role", ["fan", "admin"])
async def test_no_server_errors_or_schema_violations(
    live_server: LiveServer, admin_headers: dict[str, str], role: str, tmp_path: Path
) -> None:
    if role == "admin":
        token = admin_headers["Authorization"].split()[1]
    else:
        async with httpx.AsyncClient(base_url=live_server.url) as c:
            token = (await signup_and_login(c))["access_token"]
    result = _run(live_server, token, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
