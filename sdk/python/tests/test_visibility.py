"""ChangeVisibility, and the consumers extending the visibility of messages
whose handlers run long. The server's shortest visibility timeout is 15 s, so
the tests that wait one out are marked slow (about 20 s each)."""

import asyncio
import datetime as dt
import inspect
import threading
import time

import pytest

import opendms
import opendms.aio

from conftest import Server, eventually

slow = pytest.mark.slow


def receive_all(client: opendms.Client, queue: str, n: int, visibility: float = 15) -> list[opendms.ReceivedMessage]:
    got: list[opendms.ReceivedMessage] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += client.receive(queue, "g", max_messages=n - len(got), wait_time=1, visibility_timeout=visibility)
    assert len(got) == n
    return got


# --- change_visibility ----------------------------------------------------------


@slow
def test_change_visibility_keeps_a_message_invisible_past_its_deadline(client: opendms.Client, queue: str):
    client.send(queue, [b"extended", b"control"])
    start = time.monotonic()
    msgs = receive_all(client, queue, 2)
    extended = next(m for m in msgs if m.body == b"extended")
    time.sleep(1)
    (r,) = client.change_visibility(queue, "g", extended, 60)
    assert r.applied, r
    # Past the first deadline (15 s from the receive) only the control is back.
    time.sleep(max(0.0, start + 16 - time.monotonic()))
    again = client.receive(queue, "g", max_messages=10, wait_time=3, visibility_timeout=15)
    assert [(m.body, m.delivery_count) for m in again] == [(b"control", 2)]
    assert client.receive(queue, "g", max_messages=10, visibility_timeout=15) == []
    # The extended delivery's handle stays valid.
    assert all(r.applied for r in client.ack(queue, "g", [extended, *again]))
    stats = client.group_stats(queue, "g")
    assert (stats.consumed, stats.in_flight) == (2, 0)


def test_change_visibility_reports_each_handle(client: opendms.Client, queue: str):
    client.send(queue, [b"a", b"b"])
    a, b = receive_all(client, queue, 2)
    assert client.ack(queue, "g", a)[0].applied
    results = client.change_visibility(queue, "g", [a, "not-a-handle", b.receipt_handle, b.fail()], dt.timedelta(seconds=20))
    assert [r.applied for r in results] == [False, False, True, True]
    assert results[0].reason == opendms.Reason.RECEIPT_HANDLE_EXPIRED
    assert results[1].reason == opendms.Reason.RECEIPT_HANDLE_INVALID
    assert client.ack(queue, "g", b)[0].applied
    assert client.change_visibility(queue, "g", [], 30) == []  # no call
    with pytest.raises(opendms.InvalidArgumentError) as e:
        client.change_visibility(queue, "g", b, 5)
    assert e.value.reason == opendms.Reason.VISIBILITY_TIMEOUT_INVALID
    with pytest.raises(opendms.NotFoundError):
        client.change_visibility(queue, "nobody", b, 30)
    with pytest.raises(TypeError):
        client.change_visibility(queue, "g", [42], 30)


def test_change_visibility_asyncio(dmsd: Server, client: opendms.Client, queue: str):
    client.send(queue, b"x")

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=client.project) as c:
            (m,) = await c.receive(queue, "g", wait_time=2, visibility_timeout=15)
            ok, bogus = await c.change_visibility(queue, "g", [m, "bogus"], 30)
            assert ok.applied and not bogus.applied
            assert bogus.reason == opendms.Reason.RECEIPT_HANDLE_INVALID
            assert (await c.ack(queue, "g", m))[0].applied

    asyncio.run(asyncio.wait_for(main(), 30))


# --- the consumers --------------------------------------------------------------


@slow
def test_consumer_extends_the_visibility_of_a_long_handler(client: opendms.Client, queue: str):
    client.send(queue, b"slow")
    deliveries: list[int] = []
    started, finished = threading.Event(), threading.Event()

    def handler(m: opendms.ReceivedMessage) -> None:
        deliveries.append(m.delivery_count)
        started.set()
        time.sleep(17)
        finished.set()

    # The consumer itself keeps receiving (concurrency 10) while the handler runs.
    with client.consumer(queue, "g", handler, visibility_timeout=15, wait_time=1):
        assert started.wait(10)
        stolen = []
        while not finished.is_set():  # a second consumer, in parallel
            stolen += client.receive(queue, "g", max_messages=10, wait_time=1, visibility_timeout=15)
    assert stolen == [] and deliveries == [1]
    stats = client.group_stats(queue, "g")
    assert (stats.consumed, stats.available, stats.in_flight) == (1, 0, 0)


@slow
def test_asyncio_consumer_extends_the_visibility_of_a_long_handler(dmsd: Server, client: opendms.Client, queue: str):
    client.send(queue, b"slow")
    deliveries: list[int] = []

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=client.project) as c:
            started, finished = asyncio.Event(), asyncio.Event()

            async def handler(m: opendms.ReceivedMessage) -> None:
                deliveries.append(m.delivery_count)
                started.set()
                await asyncio.sleep(17)
                finished.set()

            async with c.consumer(queue, "g", handler, visibility_timeout=15, wait_time=1):
                await asyncio.wait_for(started.wait(), 10)
                stolen = []
                while not finished.is_set():
                    stolen += await c.receive(queue, "g", max_messages=10, wait_time=1, visibility_timeout=15)
            assert stolen == []

    asyncio.run(asyncio.wait_for(main(), 45))
    assert deliveries == [1]
    stats = client.group_stats(queue, "g")
    assert (stats.consumed, stats.available, stats.in_flight) == (1, 0, 0)


def spy_on_extensions(monkeypatch: pytest.MonkeyPatch, client, calls: list) -> None:
    """Records (visibility, results) of every change_visibility of ``client``."""
    real = client.change_visibility
    if inspect.iscoroutinefunction(real):

        async def spy(queue, group, handles, visibility, **kw):
            results = await real(queue, group, handles, visibility, **kw)
            calls.append((visibility, results))
            return results

    else:

        def spy(queue, group, handles, visibility, **kw):
            results = real(queue, group, handles, visibility, **kw)
            calls.append((visibility, results))
            return results

    monkeypatch.setattr(client, "change_visibility", spy)


def test_consumer_extends_every_extension_period(monkeypatch, client: opendms.Client, queue: str):
    calls: list = []
    spy_on_extensions(monkeypatch, client, calls)
    client.send(queue, [b"slow", b"quick"])
    done: list[bytes] = []

    def handler(m: opendms.ReceivedMessage) -> None:
        if m.body == b"slow":
            time.sleep(1.1)
        done.append(m.body)

    with client.consumer(queue, "g", handler, visibility_timeout=20, extension_period=0.3, wait_time=0.5):
        eventually(lambda: len(done) == 2, message="both handled")
    # Only the slow handler's message, about every 0.3 s while it ran.
    assert 2 <= len(calls) <= 5, calls
    assert all(v == 20 and len(rs) == 1 and rs[0].applied for v, rs in calls)
    assert client.group_stats(queue, "g").consumed == 2

    calls.clear()
    client.send(queue, b"slow")
    with client.consumer(queue, "g", handler, visibility_timeout=20, extension_period=0.3, extend_visibility=False, wait_time=0.5):
        eventually(lambda: len(done) == 3, message="handled")
    assert calls == []


def test_extension_period_must_be_shorter_than_the_visibility_timeout(client: opendms.Client, queue: str):
    for period in (15, 0, -1):
        with pytest.raises(ValueError):
            client.consumer(queue, "g", lambda m: None, visibility_timeout=15, extension_period=period)
    with pytest.raises(ValueError):  # the default visibility timeout is 30 s
        client.consumer(queue, "g", lambda m: None, extension_period=dt.timedelta(seconds=30))
    # The default: two thirds of the visibility timeout; nothing to check when off.
    assert client.consumer(queue, "g", lambda m: None, visibility_timeout=15)._opts.extension_period == 10
    client.consumer(queue, "g", lambda m: None, visibility_timeout=15, extension_period=15, extend_visibility=False)


def test_asyncio_consumer_extends_every_extension_period(monkeypatch, dmsd: Server, client: opendms.Client, queue: str):
    client.send(queue, b"slow")
    calls: list = []

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=client.project) as c:
            spy_on_extensions(monkeypatch, c, calls)
            done = asyncio.Event()

            async def handler(m: opendms.ReceivedMessage) -> None:
                await asyncio.sleep(1.1)
                done.set()

            async with c.consumer(queue, "g", handler, visibility_timeout=20, extension_period=0.3, wait_time=0.5):
                await asyncio.wait_for(done.wait(), 10)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert 2 <= len(calls) <= 5, calls
    assert all(v == 20 and len(rs) == 1 and rs[0].applied for v, rs in calls)
    assert client.group_stats(queue, "g").consumed == 1
