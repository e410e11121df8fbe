"""An in-memory Kubernetes API (kmock 0.8's KubernetesEmulator) made good enough for kopf and
kubectl. Each override closes one gap of kmock 0.8 (REAL-COMPONENTS.md lists them):

- resources are declared here, not created from the CRD (kmock ignores CRD objects);
- objects get a `metadata.uid` on create and a fresh `resourceVersion` on every write (kopf keys
  its memory by uid and guards its finalizer JSON patch with a `test` of the resourceVersion);
- a failed JSON-patch `test` is a 422 like the real API server's, not a 500;
- `generateName` is honoured (kopf posts its Events with it; kmock would store them all under
  the name None and refuse the second one with 409);
- lists carry the current resourceVersion and a watch sends only what changed after the
  one it is given (kmock replays every object at the start of each watch);
- lists carry `apiVersion` and `kind: <Kind>List` (kubectl refuses a list without them);
- `kubectl get` (which asks for a Table) gets the CRD's printer columns, as from a cluster.
It still does not validate against schemas (tests validate CRs with jsonschema), does not
handle PUT, and merges a PATCH to `/status` into the whole object.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import rendering

NAMESPACE = "ticket-rush"
CONCERTSALES = kmock.resource("ticketrush.io", "v1", "concertsales")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")


CRD_PATH = Path(__file__).resolve().parents[2] / "helm/ticket-rush/crds/concertsale.yaml"


def printer_columns() -> list[dict[str, Any]]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    columns: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return columns


def _wants_table(request: rendering.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _json_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _age(stamp: Any) -> str:
    if not stamp:
        return "<unknown>"
    moment = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - moment).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    _version: int = attrs.field(default=1, init=False)
    # The CRD's additionalPrinterColumns, rendered as the API server's Table (what kubectl get
    # asks for): kmock knows no tables, so kubectl would show only NAME and AGE.
    _columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(
        factory=lambda: {CONCERTSALES: printer_columns()}, init=False
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        verbs = {"get", "list", "watch", "create", "patch", "delete"}
        self.resources[CONCERTSALES] = kmock.ResourceInfo(
            kind="ConcertSale",
            singular="concertsale",
            namespaced=True,
            verbs=verbs,
            shortnames={"cs"},
            subresources={"status"},
        )
        self.resources[DEPLOYMENTS] = kmock.ResourceInfo(
            kind="Deployment",
            singular="deployment",
            namespaced=True,
            verbs=verbs,
            shortnames={"deploy"},
            subresources={"status", "scale"},
        )
        self.resources[EVENTS] = kmock.ResourceInfo(
            kind="Event", singular="event", namespaced=True, verbs=verbs, shortnames={"ev"}
        )
        self.resources[NAMESPACES] = kmock.ResourceInfo(
            kind="Namespace", singular="namespace", namespaced=False, verbs=verbs
        )
        self.objects[NAMESPACES, None, NAMESPACE] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        }

    def add_deployment(self, name: str, *, replicas: int = 1) -> None:
        """A Deployment object (nothing runs it: the emulator has no controllers)."""
        self.objects[DEPLOYMENTS, NAMESPACE, name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._next_version(),
            },
            "spec": {"replicas": replicas},
        }

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            request = self._replace(request, self._on_create(request))
        elif request.action == kmock.action.UPDATE and data is not None:
            request = self._replace(request, self._with_new_version(data))
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock.KubernetesError(
                status=422, reason="Invalid", message=f"the JSON patch test failed: {exc}"
            ) from exc

    def _replace(self, request: rendering.Request, data: Any) -> rendering.Request:
        # Requests are frozen and reactions find them by identity in the handler's log.
        changed = attrs.evolve(request, data=data)
        log = self._requests
        log[next(i for i, r in enumerate(log) if r is request)] = changed
        return changed

    def _on_create(self, request: rendering.Request) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(request.data))
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        meta["creationTimestamp"] = (
            datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        )
        return data

    def _with_new_version(self, data: Any) -> Any:
        version = self._next_version()
        if isinstance(data, list):  # JSON patch: its own `test` ops run first, then the bump
            return [*data, {"op": "add", "path": "/metadata/resourceVersion", "value": version}]
        patch: dict[str, Any] = json.loads(json.dumps(data))
        patch.setdefault("metadata", {})["resourceVersion"] = version
        return patch

    def _table(self, request: rendering.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        columns = self._columns.get(request.resource, []) if request.resource else []
        if not columns:
            columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0}] + [
            {
                "name": c["name"],
                "type": c["type"],
                "format": "",
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in columns
        ]

        def cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
            value = _json_path(obj, column["jsonPath"])
            return _age(value) if column["type"] == "date" else value

        rows = [
            {
                "cells": [obj["metadata"]["name"]] + [cell(obj, c) for c in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
            for obj in items
        ]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._version)},
            "columnDefinitions": definitions,
            "rows": rows,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        # kmock starts every watch with all objects, whatever resourceVersion the client listed
        # at: kopf then sees an object it already got from its list as new again, patches with
        # the old resourceVersion and waits for an event that never comes. A real watch only
        # sends what changed after the given resourceVersion, never going back.
        since = request.params.get("resourceVersion", "")
        floor = int(since) if since.isdigit() else 0
        seen: dict[tuple[str | None, str | None], int] = {}
        async for item in super()._serve_watch(request):
            if isinstance(item, dict) and item.get("type") in ("ADDED", "MODIFIED"):
                meta = item.get("object", {}).get("metadata", {})
                key = (meta.get("namespace"), meta.get("name"))
                version = int(meta.get("resourceVersion") or 0)
                if version and max(floor, seen.get(key, 0)) >= version:
                    continue
                seen[key] = version
            yield item

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_fetch(request)
        if _wants_table(request) and isinstance(payload, dict):
            return self._table(request, [payload])
        return payload

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict) and request.resource is not None
        if _wants_table(request):
            return self._table(request, payload["items"])
        info = self.resources.get(request.resource)
        group, version = request.resource.group, request.resource.version
        kind = getattr(info, "kind", None) or "Object"
        return payload | {
            "metadata": {"resourceVersion": str(self._version)},
            "apiVersion": f"{group}/{version}" if group else version,
            "kind": f"{kind}List",
        }


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": server}}],
                "users": [{"name": "operator", "user": {"token": "emulator"}}],
                "contexts": [
                    {
                        "name": "emulator",
                        "context": {
                            "cluster": "emulator",
                            "user": "operator",
                            "namespace": NAMESPACE,
                        },
                    }
                ],
                "current-context": "emulator",
            }
        )
    )
    return path
