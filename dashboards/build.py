"""Grafana dashboards as code: `python -m dashboards.build` writes dashboards/*.json.

The panels are data (title, PromQL, unit) so that tests can evaluate every query against a real
Prometheus and reports can plot the same queries; grafanalib turns them into dashboard JSON.
Queries use Grafana's `$__rate_interval`, `$__range` and the dashboard variable `$sale`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafanalib.core import (
    Dashboard,
    GridPos,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)
from grafanalib.core import Stat as StatPanel

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    stat: bool = False  # a single-number panel instead of a time series
    key: bool = False  # rendered as PNG by dashboards/render.py


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    sale_variable: bool = False


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def p99(metric: str, by: str, legend: str, where: str = "") -> Query:
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return q(
        f"histogram_quantile(0.99, sum by ({by}, le) (rate({selector}[{RATE}])))", f"p99 {legend}"
    )


def p50(metric: str, by: str, legend: str, where: str = "") -> Query:
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return q(
        f"histogram_quantile(0.5, sum by ({by}, le) (rate({selector}[{RATE}])))", f"p50 {legend}"
    )


SALE = 'sale=~"$sale"'
BOOKING_ROUTES = 'route=~"/concerts/{concert_id}/bookings|/bookings.*"'
# Ratios: `(errors or all * 0) / all` reads 0 while there is traffic but no error yet, where a
# plain division would show "no data" (the error series does not exist before the first one).
BOOKING_REQUESTS = f"sum(rate(tr_http_requests_total{{{BOOKING_ROUTES}}}[{RATE}]))"
ROUTE_REQUESTS = f'sum by (route) (rate(tr_http_requests_total{{job=~"$job"}}[{RATE}]))'
CACHE_LOOKUPS = (
    "sum by (cache)"
    f' (rate(tr_cache_requests_total{{result=~"hit|negative_hit|stale|miss"}}[{RATE}]))'
)

SALE_OVERVIEW = Board(
    uid="tr-sale-overview",
    title="Ticket-Rush / Sale overview",
    description="One sale's waiting room: queue, admission, fans' fates.",
    sale_variable=True,
    panels=(
        Panel(
            "Fans in line",
            (q(f"max by (sale, kind) (tr_admission_queue_length{{{SALE}}})", "{{sale}} {{kind}}"),),
            description="Waiting and pre-queue fans, as the sale's lease holder sees them.",
            key=True,
        ),
        Panel(
            "Admission rate: in force vs achieved",
            (
                q(f"max by (sale) (tr_admission_rate{{{SALE}}})", "{{sale}} in force"),
                q(
                    f"sum by (sale) (rate(tr_admission_admitted_total{{{SALE}}}[{RATE}]))",
                    "{{sale}} admitted",
                ),
            ),
            unit="ops",
            key=True,
        ),
        Panel(
            "Admitted fans shopping",
            (
                q(f"max by (sale) (tr_admission_active{{{SALE}}})", "{{sale}} active"),
                q(f"max by (sale) (tr_admission_max_active{{{SALE}}})", "{{sale}} max_active"),
            ),
            key=True,
        ),
        Panel(
            "Fan events per second",
            (
                q(
                    f"sum by (sale, event) (rate(tr_queue_fans_total{{{SALE}}}[{RATE}]))",
                    "{{sale}} {{event}}",
                ),
            ),
            unit="ops",
            description="Joins, abandons (place expired), unused admissions, leaves, purchases.",
            key=True,
        ),
        Panel(
            "Fans admitted (total)",
            (q(f"sum(tr_admission_admitted_total{{{SALE}}})"),),
            stat=True,
        ),
        Panel(
            "Admission lease holders",
            (q(f"sum by (sale) (tr_admission_leader{{{SALE}}})", "{{sale}}"),),
            description="Exactly 1 per open sale; 0 means no worker admits fans.",
            stat=True,
        ),
        Panel(
            "Queue joins by result (API)",
            (q(f"sum by (result) (rate(tr_queue_joins_total[{RATE}]))", "{{result}}"),),
            unit="reqps",
        ),
        Panel(
            "Status answers by state (API)",
            (q(f"sum by (state) (rate(tr_queue_status_total[{RATE}]))", "{{state}}"),),
            unit="reqps",
        ),
        Panel(
            "Admission controller decisions",
            (q(f"sum by (action) (rate(tr_admission_control_total[{RATE}]))", "{{action}}"),),
            unit="ops",
        ),
        Panel(
            "Push subscribers (SSE)",
            (q("sum(tr_queue_push_subscribers)", "open streams"),),
        ),
    ),
)

BOOKING = Board(
    uid="tr-booking",
    title="Ticket-Rush / Booking",
    description="Seat holds per strategy, locks, payments and the circuit breaker.",
    panels=(
        Panel(
            "Hold outcomes by strategy",
            (
                q(
                    f"sum by (strategy, outcome) (rate(tr_booking_outcomes_total[{RATE}]))",
                    "{{strategy}} {{outcome}}",
                ),
            ),
            unit="ops",
            key=True,
        ),
        Panel(
            "Hold latency by strategy",
            (
                p50("tr_booking_hold_duration_seconds", "strategy", "{{strategy}}"),
                p99("tr_booking_hold_duration_seconds", "strategy", "{{strategy}}"),
            ),
            unit="s",
            key=True,
        ),
        Panel(
            "Booking server-error ratio",
            (
                q(
                    f"""(sum(rate(tr_http_requests_total{{{BOOKING_ROUTES},status=~"5.."}}[{RATE}]))
                    or {BOOKING_REQUESTS} * 0) / {BOOKING_REQUESTS}""",
                    "5xx share",
                ),
            ),
            unit="percentunit",
            description="Answers that are the platform's fault; 409 seat-taken/sold-out are not.",
        ),
        Panel(
            "Lock wait by strategy",
            (
                p50("tr_booking_lock_wait_seconds", "strategy", "{{strategy}}"),
                p99("tr_booking_lock_wait_seconds", "strategy", "{{strategy}}"),
            ),
            unit="s",
            description="inprocess (asyncio locks) and redis_lock (SET NX polling) only.",
        ),
        Panel(
            "Retries by strategy",
            (q(f"sum by (strategy) (rate(tr_booking_retries_total[{RATE}]))", "{{strategy}}"),),
            unit="ops",
            description="Optimistic version conflicts and redis_lock re-polls.",
        ),
        Panel(
            "Holds expired",
            (q(f"sum by (path) (rate(tr_booking_holds_expired_total[{RATE}]))", "{{path}}"),),
            unit="ops",
        ),
        Panel(
            "Payment latency",
            (
                p50("tr_payment_duration_seconds", "operation", "{{operation}}"),
                p99("tr_payment_duration_seconds", "operation", "{{operation}}"),
            ),
            unit="s",
            key=True,
        ),
        Panel(
            "Payment outcomes",
            (
                q(
                    f"sum by (operation, outcome) (rate(tr_payment_requests_total[{RATE}]))",
                    "{{operation}} {{outcome}}",
                ),
                q(f"sum by (operation) (rate(tr_payment_retries_total[{RATE}]))", "retries"),
            ),
            unit="ops",
        ),
        Panel(
            "Payments circuit breaker",
            (q("max by (breaker) (tr_circuit_breaker_state)", "{{breaker}}"),),
            description="0 closed, 1 half-open, 2 open.",
            stat=True,
        ),
        Panel(
            "Payment simulator answers",
            (
                q(
                    f"""sum by (route, status)
                    (rate(tr_http_requests_total{{route=~"/charges|/refunds"}}[{RATE}]))""",
                    "{{route}} {{status}}",
                ),
            ),
            unit="reqps",
            description="What the provider (simulator) answered, from its own /metrics.",
        ),
    ),
)

KAFKA = Board(
    uid="tr-kafka-pipeline",
    title="Ticket-Rush / Kafka pipeline",
    description="booking-requests → booking consumers → PostgreSQL → booking-results.",
    panels=(
        Panel(
            "Consumer lag per partition",
            (q("max by (partition) (tr_booking_consumer_lag)", "partition {{partition}}"),),
            description="Messages of booking-requests not yet consumed.",
            key=True,
        ),
        Panel(
            "Produce latency (to broker ack)",
            (
                p50("tr_kafka_produce_duration_seconds", "topic", "{{topic}}"),
                p99("tr_kafka_produce_duration_seconds", "topic", "{{topic}}"),
            ),
            unit="s",
            key=True,
        ),
        Panel(
            "Batch size",
            (
                q(
                    f"""sum(rate(tr_booking_consumer_batch_size_sum[{RATE}]))
                    / sum(rate(tr_booking_consumer_batch_size_count[{RATE}]))""",
                    "mean",
                ),
                q(
                    "histogram_quantile(0.99, sum by (le)"
                    f" (rate(tr_booking_consumer_batch_size_bucket[{RATE}])))",
                    "p99",
                ),
            ),
            key=True,
        ),
        Panel(
            "Batch duration",
            (
                p50("tr_booking_consumer_batch_duration_seconds", "job", "{{job}}"),
                p99("tr_booking_consumer_batch_duration_seconds", "job", "{{job}}"),
            ),
            unit="s",
        ),
        Panel(
            "Requests processed by outcome",
            (
                q(
                    f"sum by (outcome) (rate(tr_booking_consumer_processed_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Request latency (202 accepted → outcome in PostgreSQL)",
            (
                p50("tr_booking_request_latency_seconds", "job", "{{job}}"),
                p99("tr_booking_request_latency_seconds", "job", "{{job}}"),
            ),
            unit="s",
            key=True,
        ),
        Panel(
            "Dead-lettered messages (in range)",
            (
                q(
                    "sum by (kind) (increase(tr_booking_consumer_dlq_total[$__range]))",
                    "{{kind}}",
                ),
            ),
            stat=True,
        ),
        Panel(
            "Rejected requests and batch retries",
            (
                q(
                    f"sum by (reason) (rate(tr_booking_consumer_rejected_total[{RATE}]))",
                    "rejected {{reason}}",
                ),
                q(
                    f"sum(rate(tr_booking_consumer_batch_retries_total[{RATE}]))",
                    "batch retries",
                ),
            ),
            unit="ops",
        ),
    ),
)

PLATFORM = Board(
    uid="tr-platform-health",
    title="Ticket-Rush / Platform health",
    description="RED metrics per route, caches, database pools, processes.",
    panels=(
        Panel(
            "Requests per route",
            (
                q(
                    f'sum by (route) (rate(tr_http_requests_total{{job=~"$job"}}[{RATE}]))',
                    "{{route}}",
                ),
            ),
            unit="reqps",
            key=True,
        ),
        Panel(
            "Server errors per route (5xx ratio)",
            (
                q(
                    f"""(sum by (route)
                    (rate(tr_http_requests_total{{job=~"$job",status=~"5.."}}[{RATE}]))
                    or {ROUTE_REQUESTS} * 0) / {ROUTE_REQUESTS}""",
                    "{{route}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Latency per route",
            (
                p99(
                    "tr_http_request_duration_seconds",
                    "route",
                    "{{route}}",
                    where='job=~"$job"',
                ),
            ),
            unit="s",
            key=True,
        ),
        Panel(
            "Catalog cache hit ratio",
            (
                q(
                    f"""(sum by (cache)
                    (rate(tr_cache_requests_total{{result=~"hit|negative_hit|stale"}}[{RATE}]))
                    or {CACHE_LOOKUPS} * 0) / {CACHE_LOOKUPS}""",
                    "{{cache}}",
                ),
            ),
            unit="percentunit",
            description="Stale answers count as hits (served from cache while one refresh runs).",
        ),
        Panel(
            "Database pool in use",
            (
                q(
                    """sum by (job, instance) (tr_db_pool_connections_in_use)
                    / sum by (job, instance) (tr_db_pool_connections_max > 0)""",
                    "{{job}} {{instance}}",
                ),
            ),
            unit="percentunit",
            key=True,
        ),
        Panel(
            "Admission worker tick",
            (p99("tr_admission_tick_seconds", "job", "{{job}}"),),
            unit="s",
        ),
        Panel("Targets up", (q("up", "{{job}} {{instance}}"),), stat=True),
        Panel(
            "Resident memory (workers)",
            (q("process_resident_memory_bytes", "{{job}} {{instance}}"),),
            unit="bytes",
            description="Single-process workers only: the API's multiprocess view has none.",
        ),
        Panel(
            "Auth events",
            (q(f"sum by (event) (rate(tr_auth_events_total[{RATE}]))", "{{event}}"),),
            unit="ops",
        ),
        Panel(
            "Live connections",
            (
                q("sum(tr_chat_connections)", "STOMP"),
                q("sum(tr_queue_push_subscribers)", "queue SSE"),
            ),
        ),
    ),
)

BOARDS = (SALE_OVERVIEW, BOOKING, KAFKA, PLATFORM)


def _panel(spec: Panel, ref: int, x: int, y: int) -> Any:
    targets = [
        Target(expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + i))
        for i, query in enumerate(spec.queries)
    ]
    common: dict[str, Any] = {
        "title": spec.title,
        "description": spec.description,
        "dataSource": DATASOURCE,
        "targets": targets,
        "gridPos": GridPos(h=5 if spec.stat else 8, w=6 if spec.stat else 12, x=x, y=y),
        "id": ref,
    }
    if spec.stat:
        return StatPanel(format=spec.unit, reduceCalc="lastNotNull", **common)
    return TimeSeries(unit=spec.unit, **common)


def _templates(board: Board) -> list[Any]:
    templates = [
        Template(
            name="datasource",
            query="prometheus",
            type="datasource",
            label="Data source",
        ),
        Template(
            name="job",
            query="label_values(up, job)",
            dataSource=DATASOURCE,
            label="Process",
            includeAll=True,
            multi=True,
            allValue=".*",
            default="$__all",
        ),
    ]
    if board.sale_variable:
        templates.append(
            Template(
                name="sale",
                query="label_values(tr_admission_queue_length, sale)",
                dataSource=DATASOURCE,
                label="Sale",
                includeAll=True,
                multi=True,
                allValue=".*",
                default="$__all",
            )
        )
    return templates


def build(board: Board) -> dict[str, Any]:
    """The Grafana dashboard JSON model of one board."""
    panels, x, y = [], 0, 0
    row_height = 0
    for ref, spec in enumerate(board.panels, start=1):
        width = 6 if spec.stat else 12
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(spec, ref, x, y))
        x += width
        row_height = max(row_height, 5 if spec.stat else 8)
    dashboard = Dashboard(
        title=board.title,
        uid=board.uid,
        description=board.description,
        tags=["ticket-rush"],
        panels=panels,
        templating=Templating(list=_templates(board)),
        time=Time("now-30m", "now"),
        refresh="10s",
        timezone="utc",
    )
    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=_Encoder))
    return data


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        to_json = getattr(o, "to_json_data", None)
        if to_json is not None:
            return to_json()
        return super().default(o)


def file_name(board: Board) -> str:
    return board.uid.removeprefix("tr-") + ".json"


def render(board: Board) -> str:
    return json.dumps(build(board), indent=2, sort_keys=True) + "\n"


def expand(expr: str, variables: dict[str, str] | None = None) -> str:
    """The PromQL Prometheus runs for a panel query: Grafana's variables given values (a sale
    id for `$sale`, a duration for `$__rate_interval` / `$__range`); all sales, all jobs and
    30 s / 5 m by default."""
    values = {"$__rate_interval": "30s", "$__range": "5m", "$sale": ".*", "$job": ".*"}
    values |= variables or {}
    # Longest names first: `$__rate_interval` before a hypothetical `$__rate`.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of a dashboard JSON model."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default dashboards/)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for board in BOARDS:
        path = args.out / file_name(board)
        path.write_text(render(board))
        print(f"wrote {path} ({len(board.panels)} panels)")


if __name__ == "__main__":
    main()
