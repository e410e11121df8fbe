"""`make demo`: a full ticket rush on the running local stack, with a live view and a report.

50,000 virtual fans (FANS) go after 5,000 seats (SEATS) through the waiting room, the admission
worker, the Kafka booking pipeline and the payment simulator (loadtests/rush.py says how they
behave). At the end the invariants are checked against PostgreSQL and the broker and printed;
`reports/demo/REPORT.md` and `reports/demo/report.html` (with plots) are written. The exit code
is non-zero when any invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import io
import itertools
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from app.core.config import Settings, get_settings
from app.devstack.stack import load_stack_env
from loadtests.rush import RushConfig, RushOutcome, failed_invariants, run_rush

console = Console()
KINDS = ("join", "status", "seats", "book", "outcome", "pay")


def _settings_of_stack() -> tuple[Settings, str, str | None]:
    env = load_stack_env(get_settings().run_dir)
    if not env:
        raise SystemExit("the local stack is not running: `ticket-rush stack up --with-app`")
    settings = Settings(
        database_url=env["TR_DATABASE_URL"],
        redis_url=env["TR_REDIS_URL"],
        kafka_bootstrap=env["TR_KAFKA_BOOTSTRAP"],
        jwt_secret=env["TR_JWT_SECRET"],
    )
    checkout = env.get("TR_API_CHECKOUT_PORT")
    return (
        settings,
        f"http://127.0.0.1:{env['TR_API_PORT']}",
        f"http://127.0.0.1:{checkout}" if checkout else None,
    )


def _progress_view(p: dict[str, Any]) -> Group:
    s = p["sample"]
    t = Table(show_header=True, header_style="bold", expand=False)
    for col in (
        "t (s)",
        "sale",
        "queue",
        "pre-queue",
        "admitted now",
        "admitted total",
        "rate /s",
        "sold",
        "fans done",
        "requests",
    ):
        t.add_column(col, justify="right")
    t.add_row(
        f"{p['t']:.0f}",
        s.status if s else "-",
        f"{s.queue_length:,}" if s else "-",
        f"{s.pre_queue:,}" if s else "-",
        f"{s.admitted_active:,}" if s else "-",
        f"{s.admitted_total:,}" if s else "-",
        f"{s.rate:.0f}" if s else "-",
        f"{s.sold:,}" if s else "-",
        f"{p['fans_done']:,}/{p['fans']:,}",
        f"{p['requests']:,}",
    )
    answers = ", ".join(f"{k} {v:,}" for k, v in p["answers"].most_common())
    return Group(t, Panel(answers or "no answers yet", title="fans' final answers"))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_table(outcome: RushOutcome) -> list[tuple[str, int, float, float, float]]:
    rows = []
    for kind in KINDS:
        values = [ms for _, ms in outcome.recorder.latencies.get(kind, [])]
        if values:
            rows.append(
                (
                    kind,
                    len(values),
                    _percentile(values, 0.5),
                    _percentile(values, 0.95),
                    _percentile(values, 0.99),
                )
            )
    return rows


def plots(outcome: RushOutcome) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = outcome.samples
    ts = [s.t for s in samples]
    figures: dict[str, bytes] = {}

    def save(name: str, fig: Any) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        figures[name] = buf.getvalue()

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(ts, [s.queue_length for s in samples], label="waiting in line")
    ax.plot(ts, [s.pre_queue for s in samples], label="pre-queue")
    ax.plot(ts, [s.admitted_active for s in samples], label="admitted, shopping")
    ax.set_xlabel("seconds since the sale opened")
    ax.set_ylabel("fans")
    ax.set_title("Queue length")
    ax.legend()
    save("queue.png", fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(ts, [s.rate for s in samples], label="admission rate (set)")
    ax.plot(ts, [s.measured_rate or 0 for s in samples], label="admission rate (measured)")
    ax.set_xlabel("seconds since the sale opened")
    ax.set_ylabel("fans / s")
    ax.set_title("Admission rate (backpressure controller)")
    ax.legend()
    save("rate.png", fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    sold_rate = [0.0] + [
        max(0.0, (b.sold - a.sold) / max(1e-6, b.t - a.t)) for a, b in itertools.pairwise(samples)
    ]
    ax.plot(ts, sold_rate, label="tickets sold / s")
    ax2 = ax.twinx()
    ax2.plot(ts, [s.sold for s in samples], color="tab:green", label="sold (total)")
    ax.set_xlabel("seconds since the sale opened")
    ax.set_ylabel("tickets / s")
    ax2.set_ylabel("tickets sold")
    ax.set_title("Bookings")
    save("bookings.png", fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for kind in ("join", "status", "book", "pay"):
        points = outcome.recorder.latencies.get(kind, [])
        if not points:
            continue
        buckets: dict[int, list[float]] = {}
        for t, ms in points:
            buckets.setdefault(int(t // 2) * 2, []).append(ms)
        xs = sorted(buckets)
        ax.plot(xs, [_percentile(buckets[x], 0.99) for x in xs], label=f"{kind} p99")
        ax.plot(xs, [_percentile(buckets[x], 0.5) for x in xs], linestyle=":", label=f"{kind} p50")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the sale opened")
    ax.set_ylabel("ms (client side)")
    ax.set_title("Latency percentiles over time")
    ax.legend(fontsize=7, ncol=2)
    save("latency.png", fig)
    return figures


def render_markdown(outcome: RushOutcome, failures: list[str]) -> str:
    c = outcome.checks
    cfg = outcome.config
    answers = Counter(c["answers"])
    checkout = (
        "a checkout API (1 worker) for admitted fans' seat-map, booking and payment calls, "
        if outcome.checkout_url
        else ""
    )
    lines = [
        "# Ticket-Rush demo: a full ticket rush",
        "",
        f"Run at {outcome.started_wall.isoformat(timespec='seconds')} on the local stack "
        f"(PostgreSQL, Redis, Tansu broker, API with 2 uvicorn workers, {checkout}admission "
        "worker, 2 booking consumers, payment simulator) on this machine.",
        "",
        "## Workload",
        "",
        f"- {cfg.fans:,} virtual fans for {c['seats']:,} seats; per-fan limit 4; "
        f"{cfg.early_share:.0%} arrive in the {cfg.opens_in_s:.0f} s before the sale opens "
        f"(pre-queue, random draw at open), the rest in a spike after it "
        f"(exponential, mean {cfg.spike_mean_s:.0f} s).",
        f"- {cfg.listen_share:.0%} listen on the SSE push channel, {cfg.abandon_share:.0%} "
        f"walk away after joining, the rest poll as advised; {cfg.refresh_share:.0%} of pollers "
        "reload (join again).",
        f"- Admitted fans claim 1-4 adjacent seats through the Kafka pipeline; "
        f"{cfg.no_book_share:.0%} never book, {cfg.hold_abandon_share:.0%} leave the hold to "
        "expire; the payment simulator declines some payments (a declined fan retries once, "
        "then cancels).",
        f"- Sale: max_active {cfg.max_active}, admission rate {cfg.initial_rate:.0f}/s "
        f"(bounds {cfg.min_rate:.0f}-{cfg.max_rate:.0f}, backpressure on).",
        "",
        "## Result: " + ("**all invariants hold**" if not failures else "**FAILED**"),
        "",
        "| invariant | value | expected |",
        "|---|---:|---|",
        f"| tickets sold | {c['sold']:,} | = seats ({c['seats']:,}) |",
        f"| oversold | {c['oversold']} | 0 |",
        f"| double-booked seats | {c['double_booked']} | 0 |",
        f"| booking requests accepted (202) | {c['accepted_202']:,} | all in the inbox |",
        f"| produced to booking-requests | {c['kafka_produced']:,} | - |",
        f"| processed (committed offsets) | {c['kafka_processed']:,} | - |",
        f"| left unconsumed on the topic | {c['kafka_unconsumed']:,} | 0 |",
        f"| distinct requests on the topic | {c['kafka_request_ids']:,} | = DB outcomes |",
        f"| resent copies (dropped by the inbox) | {c['kafka_resends']:,} | - |",
        f"| outcomes in PostgreSQL (inbox) | {c['db_outcomes']:,} | = distinct requests |",
        f"| acknowledged, no outcome (lost) | {c['lost']} | 0 |",
        f"| produced, no outcome / outcome, never produced | {c['unrecorded']} / "
        f"{c['phantom']} | 0 / 0 |",
        f"| results published | {c['kafka_results']:,} | ≥ processed |",
        f"| held outcomes / bookings | {c['db_held_outcomes']:,} / {c['db_bookings']:,} | equal |",
        f"| tickets fans received | {c['fan_tickets']:,} | = sold |",
        f"| fans without a final answer | {c['unanswered']} | 0 |",
        f"| refreshes that lost the place | {c['refresh_lost_place']} of {c['refreshes']} | 0 |",
        "",
        "Failures: " + ("; ".join(failures) if failures else "none"),
        "",
        "## Timeline",
        "",
        f"- Sold out (sale closed) {outcome.sold_out_after_s:.1f} s after opening."
        if outcome.sold_out_after_s is not None
        else "- The sale did not close.",
        f"- Every fan answered {outcome.finished_after_s:.1f} s after opening; "
        f"{outcome.recorder.requests:,} requests in all.",
        "",
        "## Fans' final answers",
        "",
        "| answer | fans |",
        "|---|---:|",
        *(f"| {k} | {v:,} |" for k, v in answers.most_common()),
        "",
        "## Latency (client side, whole run)",
        "",
        "| request | count | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {k} | {n:,} | {p50:.1f} | {p95:.1f} | {p99:.1f} |"
            for k, n, p50, p95, p99 in latency_table(outcome)
        ),
        "",
        "Answers by request: "
        + ", ".join(
            f"{kind} {status}: {n:,}"
            for (kind, status), n in sorted(outcome.recorder.statuses.items())
        ),
        "",
        "Client errors and retries: "
        + (", ".join(f"{k} {v}" for k, v in outcome.recorder.errors.most_common()) or "none"),
        "",
        "## Plots",
        "",
        "![queue](queue.png)",
        "",
        "![rate](rate.png)",
        "",
        "![bookings](bookings.png)",
        "",
        "![latency](latency.png)",
        "",
    ]
    return "\n".join(lines)


def render_html(markdown: str, figures: dict[str, bytes]) -> str:
    """A self-contained page: the report's tables as preformatted text and the plots inline."""
    body = [f"<pre>{html.escape(markdown.split('## Plots')[0])}</pre>"]
    for name, png in figures.items():
        data = base64.b64encode(png).decode()
        body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>')
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Ticket-Rush demo</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "color:#111}pre{white-space:pre-wrap}img{max-width:100%}</style><body>"
        + "".join(body)
        + "</body></html>"
    )


async def rush(args: argparse.Namespace) -> RushOutcome:
    settings, base_url, checkout_url = _settings_of_stack()
    cfg = RushConfig(fans=args.fans, seats=args.seats)
    console.print(
        f"[bold]Ticket rush[/]: {cfg.fans:,} fans, {cfg.seats:,} seats, against {base_url}"
        + (f" (checkout {checkout_url})" if checkout_url else "")
    )
    with Live(console=console, refresh_per_second=2, transient=False) as live:

        async def show(progress: dict[str, Any]) -> None:
            live.update(_progress_view(progress))

        return await run_rush(
            base_url=base_url,
            settings=settings,
            cfg=cfg,
            on_progress=show,
            checkout_url=checkout_url,
        )


def write_report(out: Path, outcome: RushOutcome) -> int:
    """Print the invariants, write REPORT.md, report.html and the plots; the exit code."""
    failures = failed_invariants(outcome.checks)
    markdown = render_markdown(outcome, failures)
    figures = plots(outcome)
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(markdown, encoding="utf-8")
    for name, png in figures.items():
        (out / name).write_bytes(png)
    (out / "report.html").write_text(render_html(markdown, figures), encoding="utf-8")
    c = outcome.checks
    table = Table(title="Invariants")
    for col in ("check", "value"):
        table.add_column(col)
    for key in (
        "seats",
        "sold",
        "oversold",
        "double_booked",
        "accepted_202",
        "kafka_produced",
        "kafka_processed",
        "kafka_request_ids",
        "db_outcomes",
        "lost",
        "unanswered",
        "refresh_lost_place",
    ):
        table.add_row(key, f"{c[key]:,}")
    console.print(table)
    console.print(f"wrote {out / 'REPORT.md'} and {out / 'report.html'}")
    if failures:
        console.print("[bold red]FAILED:[/] " + "; ".join(failures))
        return 1
    console.print("[bold green]all invariants hold[/]")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fans", type=int, default=50_000)
    parser.add_argument("--seats", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("reports/demo"))
    args = parser.parse_args()
    sys.exit(write_report(args.out, asyncio.run(rush(args))))


if __name__ == "__main__":
    main()
