"""The one Kubernetes call kopf does not make for us: scaling the booking-consumer Deployment.
It reuses the credentials kopf logged in with (service account in a cluster, kubeconfig
elsewhere), so RBAC is the operator's Role: deployments get/patch."""

from __future__ import annotations

import aiohttp
import kopf


class KubeUnavailable(Exception):
    """The Kubernetes API did not answer as expected."""


class Deployments:
    def __init__(self, info: kopf.ConnectionInfo, *, timeout_s: float) -> None:
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
            headers=info.as_http_headers(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def close(self) -> None:
        await self._session.close()

    def _url(self, namespace: str, name: str) -> str:
        return f"{self._server}/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    async def replicas(self, namespace: str, name: str) -> int | None:
        """The Deployment's spec.replicas; None when there is no such Deployment."""
        try:
            async with self._session.get(self._url(namespace, name)) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise KubeUnavailable(f"GET deployment {name}: HTTP {resp.status}")
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeUnavailable(f"GET deployment {name}: {exc!r}") from exc
        return int(body.get("spec", {}).get("replicas", 1))

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        try:
            async with self._session.patch(
                self._url(namespace, name),
                json={"spec": {"replicas": replicas}},
                headers={"Content-Type": "application/merge-patch+json"},
            ) as resp:
                if resp.status != 200:
                    raise KubeUnavailable(f"PATCH deployment {name}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeUnavailable(f"PATCH deployment {name}: {exc!r}") from exc
