import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.devstack.broker import (
    ensure_topics,
    free_port,
    process_alive,
    start_broker,
    stop_process,
    tansu_binary,
    wait_broker_ready,
)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = start_broker(port, tmp_path / "broker.log")
    try:
        await wait_broker_ready(f"127.0.0.1:{port}", timeout=10)
        yield f"127.0.0.1:{port}", proc
    finally:
        stop_process(proc.pid)


def test_tansu_binary_is_executable() -> None:
    assert tansu_binary().name == "tansu"


async def test_topics_produce_consume_and_stop(broker, tmp_path: Path) -> None:
    bootstrap, proc = broker
    topics = {"orders": 4, "events": 2}
    await ensure_topics(bootstrap, topics)
    await ensure_topics(bootstrap, topics)  # existing topics are fine

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for name, count in topics.items():
            assert await producer.partitions_for(name) == set(range(count))
        sent = await producer.send_and_wait("orders", key=b"concert-7", value=b"hello")
    finally:
        await producer.stop()

    # Manual assignment: a consumer-group join costs seconds of rebalance delay on Tansu.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition("orders", sent.partition)])
        message = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"concert-7", b"hello")
    assert message.partition == sent.partition

    stop_process(proc.pid)
    assert not process_alive(proc.pid)
    assert proc.poll() is not None
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", int(bootstrap.rpartition(":")[2]))


def test_stop_process_kills_a_process_group_that_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
    started = time.monotonic()
    stop_process(proc.pid, timeout=0.5)
    assert not process_alive(proc.pid)
    assert time.monotonic() - started >= 0.5  # it took the SIGKILL
    proc.stdout.close()
