"""A private Prometheus (Debian's `prometheus`) scraping the processes a test starts."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.devstack.broker import free_port, spawn, stop_process


@dataclass
class Prometheus:
    url: str
    config_path: Path
    log_path: Path

    def scrape(self, targets: dict[str, list[str]]) -> None:
        """Replace the scrape targets (job -> host:port list) and reload the configuration."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config))
        r = httpx.post(self.url + "/-/reload", timeout=10)
        assert r.status_code == 200, r.text

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; fails the test on any error."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        r = httpx.get(self.url + "/api/v1/query", params=params, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> dict[str, str]:
        r = httpx.get(self.url + "/api/v1/targets", timeout=10)
        return {
            f"{t['labels']['job']}/{t['labels']['instance']}": t["health"]
            for t in r.json()["data"]["activeTargets"]
        }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: apt-get install prometheus (see .ci/run)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}}))
    log_path = tmp_path / "prometheus.log"
    proc = spawn(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            # Debian's default points at its own files under /usr/share.
            f"--web.console.templates={tmp_path}",
            f"--web.console.libraries={tmp_path}",
        ],
        log_path,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc.pid)
            raise RuntimeError("Prometheus did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    yield Prometheus(url, config, log_path)
    stop_process(proc.pid)
