"""The nginx-rtmp ingest: render the config template kept in this package and run nginx.

Used by the streaming tests and meant for the local stack; the deployment renders the same
template with envsubst (only `${UPPER_CASE}` names are variables)."""

from __future__ import annotations

import getpass
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.devstack.broker import spawn, stop_process

TEMPLATE = Path(__file__).with_name("nginx") / "nginx-rtmp.conf.template"
DEBIAN_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# The secret sits in a URL query and in nginx syntax: nothing that needs quoting there.
_SAFE_SECRET = re.compile(r"[A-Za-z0-9_-]{16,}")


class IngestError(RuntimeError):
    pass


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    run_dir: Path
    hls_dir: Path
    rtmp_port: int
    http_port: int
    # Base of the API's callbacks, e.g. http://127.0.0.1:8000/rtmp
    callback_url: str
    callback_secret: str
    # Must include 127.0.0.1 (0.0.0.0 does): `live` pushes to `hls` over loopback.
    bind: str = "127.0.0.1"
    update_interval_s: int = 10
    hls_fragment_s: int = 2
    hls_playlist_length_s: int = 10
    rtmp_module: Path = DEBIAN_RTMP_MODULE

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live"

    @property
    def hls_base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls"

    def variables(self) -> dict[str, str]:
        if not _SAFE_SECRET.fullmatch(self.callback_secret):
            raise IngestError("The callback secret must be 16+ characters of [A-Za-z0-9_-].")
        return {
            "RTMP_MODULE": str(self.rtmp_module),
            # Only honoured when nginx starts as root; then workers run as the same user.
            "NGINX_USER": getpass.getuser(),
            "RUN_DIR": str(self.run_dir),
            "HLS_DIR": str(self.hls_dir),
            "BIND": self.bind,
            "RTMP_PORT": str(self.rtmp_port),
            "HTTP_PORT": str(self.http_port),
            "CALLBACK_URL": self.callback_url.rstrip("/"),
            "CALLBACK_SECRET": self.callback_secret,
            "UPDATE_INTERVAL": str(self.update_interval_s),
            "HLS_FRAGMENT": str(self.hls_fragment_s),
            "HLS_PLAYLIST_LENGTH": str(self.hls_playlist_length_s),
        }


def render_config(config: IngestConfig, template: str | None = None) -> str:
    """The template with every `${NAME}` replaced; an unknown name is an error."""
    text = TEMPLATE.read_text() if template is None else template
    values = config.variables()
    missing = sorted({m for m in _VARIABLE.findall(text) if m not in values})
    if missing:
        raise IngestError(f"No value for template variable(s): {', '.join(missing)}")
    return _VARIABLE.sub(lambda m: values[m.group(1)], text)


@dataclass
class Ingest:
    config: IngestConfig
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop_process(self.proc.pid)

    def error_log(self) -> str:
        path = self.config.run_dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_ingest(config: IngestConfig, *, nginx: str = "nginx", timeout: float = 10) -> Ingest:
    """Write the config under `run_dir`, check it with `nginx -t`, start nginx in the foreground
    (its own process group) and wait until both ports accept connections."""
    binary = shutil.which(nginx)
    if binary is None or not config.rtmp_module.exists():
        raise IngestError("nginx-rtmp is missing: apt-get install nginx libnginx-mod-rtmp")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.hls_dir.mkdir(parents=True, exist_ok=True)
    conf = config.run_dir / "nginx.conf"
    conf.write_text(render_config(config))
    argv = [binary, "-p", str(config.run_dir), "-c", str(conf)]
    check = subprocess.run(  # noqa: S603 - argv list, no shell
        [*argv, "-t", "-q"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise IngestError(f"nginx rejected the config:\n{check.stderr}")
    log_path = config.run_dir / "nginx.out"
    proc = spawn(argv, log_path)
    deadline = time.monotonic() + timeout
    while not (_port_open(config.rtmp_port) and _port_open(config.http_port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc.pid)
            raise IngestError("nginx did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.05)
    return Ingest(config, proc, log_path)
