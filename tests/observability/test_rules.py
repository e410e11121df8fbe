"""The alert rules: valid for promtool, right on synthetic series (rules_test.yml), and the same
rules in the chart's PrometheusRule."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm/ticket-rush/rules/ticket-rush.rules.yml"
HERE = Path(__file__).resolve().parent
EXPECTED_ALERTS = {
    "AdmissionStalled",
    "BookingConsumerLagGrowing",
    "BookingDeadLetters",
    "BookingErrorRatioHigh",
    "PaymentsCircuitOpen",
    "ApiLatencyP99OverBudget",
    "BookingPipelineP99OverBudget",
}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: apt-get install prometheus (see .ci/run)"
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts_of(groups: list[dict]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check() -> None:
    result = run(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert alerts_of(yaml.safe_load(RULES.read_text())["groups"]) == EXPECTED_ALERTS


def test_rules_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", "rules_test.yml", cwd=HERE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == firing == EXPECTED_ALERTS


def test_chart_prometheus_rule_embeds_the_same_rules(tmp_path: Path) -> None:
    chart = helm_python.Chart.load(ROOT / "helm/ticket-rush")
    assert not any(
        "PrometheusRule" in text
        for text in chart.render({}, name="ticket-rush", namespace="tr").values()
    )
    rendered = chart.render(
        {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        name="ticket-rush",
        namespace="tr",
    )
    [rule] = [
        doc
        for path, text in rendered.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc.get("kind") == "PrometheusRule"
    ]
    lint = helm_python.lint(
        ROOT / "helm/ticket-rush", {"prometheusRule": {"enabled": True}}, strict=True
    )
    assert lint["errors"] == []
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # A custom resource: no built-in schema, so what the operator loads is checked by promtool.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(rule, "1.30", strict=True)
    spec_file = tmp_path / "rendered.rules.yml"
    spec_file.write_text(yaml.safe_dump(rule["spec"]))
    result = run(promtool(), "check", "rules", str(spec_file))
    assert result.returncode == 0, result.stdout + result.stderr
