"""`python -m dashboards.render`: the key dashboard panels as PNGs for reports.

Grafana cannot be installed here, so the panels marked `key` in dashboards/build.py are drawn
with matplotlib from Prometheus' range queries (`/api/v1/query_range`), the same PromQL the
dashboards run, over the last `--minutes` (or `--start`/`--end`, Unix seconds).
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dashboards.build import BOARDS, Panel, expand

_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def query_range(
    client: httpx.Client, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    r = client.get(
        "/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step}
    )
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    text = _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), template).strip()
    return text or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_panel(
    client: httpx.Client,
    panel: Panel,
    path: Path,
    *,
    start: float,
    end: float,
    variables: dict[str, str],
) -> int:
    """Draw one panel to `path`; the number of series drawn."""
    step = max(1.0, (end - start) / 300)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    drawn = 0
    for query in panel.queries:
        for series in query_range(client, expand(query.expr, variables), start, end, step):
            points = [(float(t), float(v)) for t, v in series["values"]]
            points = [(t - start, v) for t, v in points if math.isfinite(v)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=legend(query.legend, series["metric"]), linewidth=1.2)
            drawn += 1
    ax.set_title(panel.title)
    ax.set_xlabel("seconds")
    ax.set_ylabel(panel.unit)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


def render_key_panels(
    prometheus_url: str,
    out: Path,
    *,
    start: float,
    end: float,
    variables: dict[str, str] | None = None,
) -> dict[Path, int]:
    """Every key panel of every board as `<out>/<board>--<panel>.png`: path -> series drawn."""
    out.mkdir(parents=True, exist_ok=True)
    drawn: dict[Path, int] = {}
    with httpx.Client(base_url=prometheus_url, timeout=30) as client:
        for board in BOARDS:
            for panel in board.panels:
                if not panel.key:
                    continue
                path = out / f"{board.uid.removeprefix('tr-')}--{slug(panel.title)}.png"
                drawn[path] = render_panel(
                    client, panel, path, start=start, end=end, variables=variables or {}
                )
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboards.render", description=__doc__)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=Path("reports/dashboards"))
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--start", type=float, help="Unix seconds (default: now - minutes)")
    parser.add_argument("--end", type=float, help="Unix seconds (default: now)")
    parser.add_argument("--sale", default=".*", help="sale id (regex) for the $sale variable")
    args = parser.parse_args()
    end = args.end or time.time()
    start = args.start or end - args.minutes * 60
    drawn = render_key_panels(
        args.prometheus, args.out, start=start, end=end, variables={"$sale": args.sale}
    )
    for path, series in drawn.items():
        print(f"wrote {path} ({series} series)")


if __name__ == "__main__":
    main()
