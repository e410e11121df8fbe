"""The ConcertSale CRD: a valid apiextensions/v1 object, a structural schema that rejects bad
specs, and CEL rules (x-kubernetes-validations) evaluated with cel-python the way the API
server does (values typed by the schema: number -> double, date-time -> timestamp)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes

from tests.conftest import ROOT
from tests.k8s.operator_fixtures import CRD_PATH, crd_schema, schema_errors

EXAMPLE = yaml.safe_load((ROOT / "examples" / "concertsale.yaml").read_text())


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(v, props.get(k, {})) for k, v in value.items()}
        )
    if kind == "array":
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if kind == "number":
        return celtypes.DoubleType(value)
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "boolean":
        return celtypes.BoolType(value)
    if kind == "string" and schema.get("format") == "date-time":
        return celtypes.TimestampType(value)
    return celtypes.StringType(value)


def rules(
    value: Any, schema: dict[str, Any], old: Any = None, path: str = ""
) -> Iterator[tuple[str, dict[str, Any], Any, Any]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule, value, old
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                old_sub = old.get(key) if isinstance(old, dict) else None
                yield from rules(value[key], sub, old_sub, f"{path}.{key}")


def cel_failures(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """The messages of the CEL rules `obj` breaks (transition rules only on update)."""
    env = celpy.Environment()
    schema = crd_schema()
    failed = []
    for path, rule, value, old_value in rules(obj, schema, old):
        if "oldSelf" in rule["rule"] and old_value is None:
            continue
        sub = _schema_at(schema, path)
        activation = {"self": to_cel(value, sub)}
        if old_value is not None:
            activation["oldSelf"] = to_cel(old_value, sub)
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            failed.append(rule["message"])
    return failed


def _schema_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in filter(None, path.split(".")):
        schema = schema["properties"][part]
    return schema


def variant(**changes: Any) -> dict[str, Any]:
    """The example with dotted-path changes (None deletes the field)."""
    obj = copy.deepcopy(EXAMPLE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = obj
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return obj


def test_the_crd_is_a_valid_kubernetes_object() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    kubernetes_validate.validate(crd, "1.30.0", strict=True)
    assert crd["spec"]["names"]["shortNames"] == ["cs"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {"Phase", "Rate", "Queue", "Sold", "Age"} <= columns.keys()
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for path in columns.values():
        if path.startswith(".status."):
            assert path.removeprefix(".status.") in status  # every column points at a field


def test_the_schema_is_structural() -> None:
    """Every node has a type (the API server refuses a non-structural CRD)."""

    def walk(node: dict[str, Any], where: str) -> None:
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), where
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    walk(crd_schema(), "")


def test_the_example_is_valid() -> None:
    assert schema_errors(EXAMPLE) == []
    assert cel_failures(EXAMPLE) == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"spec__concertId": None}, "'concertId' is a required property"),
        ({"spec__concertId": 0}, "less than the minimum of 1"),
        ({"spec__admission__minRate": 0}, "less than or equal to the minimum of 0"),
        ({"spec__admission__initialRate": -5}, "less than or equal to the minimum of 0"),
        ({"spec__admission__maxRate": 1e9}, "greater than the maximum of 100000"),
        ({"spec__admission__maxActive": 0}, "less than the minimum of 1"),
        ({"spec__consumers__min": 0}, "less than the minimum of 1"),
        ({"spec__consumers__targetLagPerReplica": 0}, "less than the minimum of 1"),
        ({"spec__consumers": None}, "'consumers' is a required property"),
        ({"spec__opensAt": "next friday"}, "is not a 'date-time'"),
        ({"spec__admission__maxRate": "fast"}, "is not of type 'number'"),
        ({"status": {"phase": "Sold"}}, "is not one of"),
    ],
)
def test_the_schema_rejects(changes: dict[str, Any], error: str) -> None:
    errors = schema_errors(variant(**changes))
    assert any(error in e for e in errors), errors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"spec__admission__minRate": 600, "spec__admission__initialRate": 600},
            "admission.minRate must not exceed admission.maxRate",
        ),
        ({"spec__admission__initialRate": 501}, "admission.initialRate must be within"),
        ({"spec__admission__initialRate": 4}, "admission.initialRate must be within"),
        ({"spec__consumers__min": 5}, "consumers.min must not exceed consumers.max"),
        ({"spec__closesAt": "2026-12-24T18:00:00Z"}, "opensAt must be before closesAt"),
        ({"spec__closesAt": "2026-12-24T17:00:00+00:00"}, "opensAt must be before closesAt"),
    ],
)
def test_the_cel_rules_reject(changes: dict[str, Any], message: str) -> None:
    bad = variant(**changes)
    assert schema_errors(bad) == []  # only CEL catches these
    failures = cel_failures(bad)
    assert failures and all(f.startswith(("admission.", "consumers.", "opensAt")) for f in failures)
    assert any(f.startswith(message) for f in failures), failures


def test_cel_rules_compare_times_not_strings() -> None:
    # 19:00+02:00 is 17:00Z: before opensAt although it sorts after it as a string.
    assert cel_failures(variant(spec__closesAt="2026-12-24T19:00:00+02:00")) == [
        "opensAt must be before closesAt"
    ]


def test_concert_id_is_immutable_on_update() -> None:
    assert cel_failures(variant(spec__concertId=2), old=EXAMPLE) == ["concertId is immutable"]
    assert cel_failures(variant(spec__admission__maxRate=400), old=EXAMPLE) == []
