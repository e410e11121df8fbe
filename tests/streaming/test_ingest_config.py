"""The nginx config template renders completely, and nginx itself accepts the result."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from app.streaming.ingest import TEMPLATE, IngestConfig, IngestError, render_config


def config(tmp_path: Path, **overrides: object) -> IngestConfig:
    values: dict[str, object] = {
        "run_dir": tmp_path,
        "hls_dir": tmp_path / "hls",
        "rtmp_port": 19350,
        "http_port": 18080,
        "callback_url": "http://127.0.0.1:8000/rtmp/",
        "callback_secret": "s3cret-for-the-callbacks",
    } | overrides
    return IngestConfig(**values)  # type: ignore[arg-type]


def test_every_variable_is_filled_and_nginx_variables_stay(tmp_path: Path) -> None:
    rendered = render_config(config(tmp_path))
    assert "${" not in rendered
    assert f"exec_publish_done rm -rf {tmp_path}/hls/$name;" in rendered
    assert (
        "on_publish http://127.0.0.1:8000/rtmp/on_publish?secret=s3cret-for-the-callbacks;"
        in rendered
    )
    assert re.search(r"listen 127\.0\.0\.1:19350;", rendered)
    assert "push rtmp://127.0.0.1:19350/hls;" in rendered
    # Every variable of the template is one the renderer knows (the deployment sets the same).
    names = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", TEMPLATE.read_text()))
    assert names == set(config(tmp_path).variables())


def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_config(config(tmp_path)))
    (tmp_path / "hls").mkdir()
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    "secret", ["short", "has space in it!!", "semi;colon-0123456789", "a&b=c0123456789abc"]
)
def test_unsafe_secrets_are_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(IngestError):
        render_config(config(tmp_path, callback_secret=secret))


def test_an_unknown_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="NOPE"):
        render_config(config(tmp_path), template="listen ${NOPE}; set $name 1;")
