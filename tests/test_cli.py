"""The operator CLI as a user runs it: real subprocesses against a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.conftest import PASSWORD, REDIS_URL
from tests.fixtures.databases import create_database, drop_database


@pytest.fixture(scope="module")
def cli_env(
    tmp_path_factory: pytest.TempPathFactory, redis_prefix: str
) -> Iterator[dict[str, str]]:
    url = create_database("tr_cli")
    env = os.environ | {
        "TR_DATABASE_URL": url,
        "TR_REDIS_URL": REDIS_URL,
        "TR_REDIS_PREFIX": redis_prefix + "-cli",
        "TR_RUN_DIR": str(tmp_path_factory.mktemp("run")),
        "TR_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    }
    yield env
    drop_database(url)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
    )


def query(env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    dsn = env["TR_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_migrate_seed_is_idempotent(cli_env: dict[str, str]) -> None:
    r = cli(cli_env, "migrate")
    assert r.returncode == 0, r.stderr
    first = cli(cli_env, "seed")
    assert first.returncode == 0, first.stderr
    counts = query(cli_env, "SELECT (SELECT count(*) FROM concert), (SELECT count(*) FROM seat)")
    second = cli(cli_env, "seed")
    assert second.returncode == 0, second.stderr
    assert "0 agencies, 0 artists, 0 venues, 0 concerts, 0 seats" in second.stdout
    assert (
        query(cli_env, "SELECT (SELECT count(*) FROM concert), (SELECT count(*) FROM seat)")
        == counts
    )
    assert counts[0][0] >= 4 and counts[0][1] > 10_000
    groups = query(
        cli_env,
        "SELECT p.name, count(*) FROM artist m JOIN artist p ON m.parent_id = p.id"
        " WHERE p.name = 'BLACKPINK' GROUP BY p.name",
    )
    assert groups == [("BLACKPINK", 4)]


def test_create_admin_creates_then_promotes(cli_env: dict[str, str]) -> None:
    assert cli(cli_env, "migrate").returncode == 0
    env = cli_env | {"TR_ADMIN_PASSWORD": PASSWORD}
    r = cli(env, "create-admin", " Boss@Example.COM ")
    assert r.returncode == 0, r.stderr + r.stdout
    assert query(cli_env, "SELECT email, role FROM app_user WHERE email = 'boss@example.com'") == [
        ("boss@example.com", "admin")
    ]
    weak = cli(cli_env | {"TR_ADMIN_PASSWORD": "short"}, "create-admin", "weak@example.com")
    assert weak.returncode == 1
    assert query(cli_env, "SELECT count(*) FROM app_user WHERE email = 'weak@example.com'") == [
        (0,)
    ]
    # An existing fan is promoted without touching the password.
    query_sql = "UPDATE app_user SET role = 'fan' WHERE email = 'boss@example.com' RETURNING id"
    query(cli_env, query_sql)
    assert cli(cli_env, "create-admin", "boss@example.com").returncode == 0
    assert query(cli_env, "SELECT role FROM app_user WHERE email = 'boss@example.com'") == [
        ("admin",)
    ]
