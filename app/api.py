"""`python -m app.api`: serve the API with uvicorn using the TR_* settings."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

import uvicorn

from app.core.config import Settings, get_settings


def main() -> None:
    settings = get_settings()
    own_dir = None
    given_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given_dir:
        # prometheus-client requires the directory wiped before the workers start: files of an
        # earlier run (a restarted container keeps its emptyDir) would be summed with ours.
        for stale in glob.glob(os.path.join(given_dir, "*.db")):
            os.remove(stale)
    elif settings.api_workers > 1:
        # Several workers must share one metrics view; prometheus-client does it via files.
        own_dir = tempfile.mkdtemp(prefix="tr-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _serve(settings)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _serve(settings: Settings) -> None:
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        # Chat frames are small JSON: deflate cost ~40% of the API's CPU per delivered message
        # in `make bench-chat` (50.7 -> 31.5 us) for little saved bandwidth.
        ws_per_message_deflate=False,
        timeout_keep_alive=settings.api_keep_alive_s,
    )


if __name__ == "__main__":
    main()
