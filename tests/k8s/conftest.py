"""Shared helpers for the chart and Pulumi tests: render the real chart with the Helm library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from app.core.config import PROJECT_ROOT

CHART_DIR = PROJECT_ROOT / "helm" / "ticket-rush"
CRD_FILE = CHART_DIR / "crds" / "concertsale.yaml"
NAMESPACE = "ticket-rush"
# Oldest supported and newest known Kubernetes.
KUBE_VERSIONS = ("1.30.0", "1.37.0")

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    loaded = helm_python.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


def render(
    chart: helm_python.Chart,
    values: dict[str, Any] | None = None,
    *,
    release: str = "ticket-rush",
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """Every object the chart renders (templates only; CRDs come from `crds/`)."""
    rendered = chart.render(values or {}, name=release, namespace=namespace)
    objects: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def load_crd() -> Manifest:
    crd = yaml.safe_load(Path(CRD_FILE).read_text())
    assert isinstance(crd, dict)
    return crd
