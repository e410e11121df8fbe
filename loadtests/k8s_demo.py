"""`make k8s-demo`: the Kubernetes control plane of a sale, on this machine.

The in-memory Kubernetes API (kmock emulator, tests/k8s/emulator.py) + the real operator
(`kopf run`) + the local stack (`ticket-rush stack up --with-app`). kubectl applies
examples/concertsale.yaml (with the concert and a seconds-long timeline filled in) and
`kubectl get concertsales -o wide` shows the sale moving Scheduled -> Warming -> Open ->
Draining/Closed with its status columns, while fans join the waiting room through the real API.
The booking-consumer Deployment is an object in the emulator (no pods run: the stack's own
consumer processes do the work), so the Consumers column is what the operator asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import kmock
import yaml

from app.core.config import get_settings
from app.devstack.broker import spawn, stop_process
from app.devstack.stack import load_stack_env
from tests.k8s.emulator import CONCERTSALES, NAMESPACE, ClusterEmulator, write_kubeconfig

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOYMENT = "ticket-rush-booking-consumer"


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


async def kubectl(kubeconfig: Path, *args: str, show: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "kubectl"),
        f"--kubeconfig={kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), timeout=30))[0].decode()
    if show:
        print(f"$ kubectl {' '.join(args)}\n{out}", end="", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {args} failed:\n{out}")
    return out


def make_admin(env: dict[str, str]) -> tuple[str, str]:
    email = f"operator-{uuid.uuid4().hex[:6]}@example.com"
    password = secrets.token_urlsafe(18)
    subprocess.run(
        [str(BIN / "ticket-rush"), "create-admin", email, "--display-name", "Operator"],
        env=os.environ | env | {"TR_ADMIN_PASSWORD": password},
        check=True,
        capture_output=True,
    )
    return email, password


def pick_concert(api: httpx.Client) -> int:
    """A seeded concert with seats that has no live sale (or the operator adopts it)."""
    for concert in api.get("/concerts", params={"limit": 100}).json()["items"]:
        if concert.get("status") in ("draft", "on_sale"):
            return int(concert["id"])
    raise SystemExit("no concert to sell: run `ticket-rush seed` first")


def fans(api: httpx.Client, n: int, store: Path) -> list[dict[str, str]]:
    """`n` fan accounts, kept in .run/ across runs (sign-ups are rate-limited per address)."""
    accounts: list[dict[str, str]] = json.loads(store.read_text()) if store.exists() else []
    while len(accounts) < n:
        account = {
            "email": f"demo-fan-{uuid.uuid4().hex[:8]}@example.com",
            "password": secrets.token_urlsafe(12),
        }
        body = account | {"display_name": "Fan"}
        api.post("/auth/signup", json=body).raise_for_status()
        accounts.append(account)
        store.write_text(json.dumps(accounts))
    headers = []
    for account in accounts[:n]:
        token = api.post("/auth/login", json=account)
        token.raise_for_status()
        headers.append({"Authorization": f"Bearer {token.json()['access_token']}"})
    return headers


def sale_manifest(concert_id: int, opens_in: float, closes_in: float) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "concertsale.yaml").read_text())
    now = datetime.now(UTC)
    body["metadata"]["namespace"] = NAMESPACE
    body["spec"] |= {
        "concertId": concert_id,
        "opensAt": (now + timedelta(seconds=opens_in)).isoformat(timespec="seconds"),
        "closesAt": (now + timedelta(seconds=closes_in)).isoformat(timespec="seconds"),
        "warmupSeconds": 6,
    }
    body["spec"]["consumers"]["scaleDownStabilizationSeconds"] = 5
    return body


@dataclass(frozen=True)
class Prepared:
    stack: dict[str, str]
    api_url: str
    admin: tuple[str, str]
    concert_id: int
    crowd: list[dict[str, str]]


def prepare(args: argparse.Namespace) -> Prepared:
    """The operator's admin account, a concert to sell and fans, on the running stack."""
    run_dir = get_settings().run_dir
    stack = load_stack_env(run_dir)
    api_url = f"http://127.0.0.1:{stack['TR_API_PORT']}"
    with httpx.Client(base_url=api_url, timeout=10) as api:
        api.get("/healthz").raise_for_status()
        return Prepared(
            stack,
            api_url,
            make_admin(stack),
            pick_concert(api),
            fans(api, args.fans, run_dir / "k8s-demo-fans.json"),
        )


async def run(prep: Prepared, args: argparse.Namespace) -> None:
    settings = get_settings()
    stack, api_url, admin = prep.stack, prep.api_url, prep.admin
    work = Path(tempfile.mkdtemp(prefix="tr-k8s-demo-"))
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.add_deployment(DEPLOYMENT, replicas=1)
        url = str(server.url).rstrip("/")
        kubeconfig = write_kubeconfig(work / "kubeconfig", url)
        say(f"Kubernetes API emulator at {url}; operator log: {work / 'operator.log'}")
        env = os.environ | {
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'operator'}",
            "TR_OPERATOR_API_URL": api_url,
            "TR_OPERATOR_ADMIN_EMAIL": admin[0],
            "TR_OPERATOR_ADMIN_PASSWORD": admin[1],
            "TR_OPERATOR_REDIS_URL": stack["TR_REDIS_URL"],
            "TR_OPERATOR_REDIS_PREFIX": os.environ.get("TR_REDIS_PREFIX", settings.redis_prefix),
            "TR_OPERATOR_KAFKA_BOOTSTRAP": stack["TR_KAFKA_BOOTSTRAP"],
            "TR_OPERATOR_CONSUMER_DEPLOYMENT": DEPLOYMENT,
            "TR_OPERATOR_RECONCILE_INTERVAL_S": "1",
        }
        operator = spawn(
            [
                str(BIN / "kopf"),
                "run",
                "--standalone",
                f"--namespace={NAMESPACE}",
                "-m",
                "ticket_rush_operator.handlers",
            ],
            work / "operator.log",
            env=env,
            cwd=ROOT,
        )
        try:
            await demo(kubeconfig, emulator, api_url, prep.concert_id, prep.crowd, args)
        finally:
            stop_process(operator.pid)


async def demo(
    kubeconfig: Path,
    emulator: ClusterEmulator,
    api_url: str,
    concert_id: int,
    crowd: list[dict[str, str]],
    args: argparse.Namespace,
) -> None:
    manifest = kubeconfig.parent / "concertsale.yaml"
    manifest.write_text(yaml.safe_dump(sale_manifest(concert_id, args.opens_in, args.closes_in)))
    say(f"examples/concertsale.yaml for concert {concert_id}, opening in {args.opens_in:g} s")
    await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]

    def status() -> dict[str, Any]:
        key = (CONCERTSALES, NAMESPACE, name)
        return dict(emulator.objects[key].get("status", {})) if key in emulator.objects else {}

    joined = False
    deadline = time.monotonic() + args.closes_in + 30
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        while time.monotonic() < deadline:
            if not joined and status().get("saleId"):
                sale_id = status()["saleId"]
                for headers in crowd:
                    await api.post(f"/sales/{sale_id}/queue", headers=headers)
                say(f"{len(crowd)} fans joined the waiting room of sale {sale_id}")
                joined = True
            await kubectl(kubeconfig, "get", "concertsales", "-o", "wide")
            if status().get("phase") == "Closed":
                break
            await asyncio.sleep(args.every)

    say("Events the operator posted")
    for (resource, _, _), obj in emulator.objects.items():
        if resource == kmock.resource("", "v1", "events") and not obj.deleted:
            print(f"{obj.get('type', ''):8} {obj.get('reason', ''):16} {obj.get('message', '')}")
    say("Deleting the ConcertSale: the operator closes the sale, then drops its finalizer")
    await kubectl(kubeconfig, "delete", "concertsale", name, "--wait=false")
    for _ in range(50):
        if (CONCERTSALES, NAMESPACE, name) not in emulator.objects or emulator.objects[
            CONCERTSALES, NAMESPACE, name
        ].deleted:
            break
        await asyncio.sleep(0.2)
    await kubectl(kubeconfig, "get", "concertsales")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opens-in", type=float, default=12.0)
    parser.add_argument("--closes-in", type=float, default=30.0)
    parser.add_argument("--fans", type=int, default=10)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between kubectl gets")
    args = parser.parse_args()
    asyncio.run(run(prepare(args), args))


if __name__ == "__main__":
    main()
