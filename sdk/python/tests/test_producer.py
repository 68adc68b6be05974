"""The batching producer."""

import threading
import time

import pytest

import opendms

from conftest import drain


def test_many_threads_all_arrive_once(client: opendms.Client, queue: str):
    threads, per_thread = 8, 250
    futures: list = []
    lock = threading.Lock()

    with client.producer(queue, linger=0.01, max_batch_messages=200) as producer:

        def produce(t: int) -> None:
            mine = [producer.send(opendms.Message(f"{t}-{i}".encode(), attributes={"t": t})) for i in range(per_thread)]
            with lock:
                futures.extend(mine)

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    # Closing sent and settled everything.
    results = [f.result(timeout=0) for f in futures]
    assert len({(r.partition, r.offset) for r in results}) == threads * per_thread
    assert len({r.message_id for r in results}) == threads * per_thread

    got = drain(client, queue, expect=threads * per_thread)
    bodies = [m.body for m in got]
    assert len(bodies) == threads * per_thread
    assert set(bodies) == {f"{t}-{i}".encode() for t in range(threads) for i in range(per_thread)}


def test_batches_respect_the_limits_and_flush(client: opendms.Client, queue: str):
    producer = client.producer(queue, linger=60, max_batch_messages=7)
    futures = [producer.send(b"x") for _ in range(10)]
    # Seven fill a batch that goes at once; three wait for the long linger.
    futures[6].result(timeout=5)
    assert not futures[9].done()
    producer.flush(timeout=5)
    assert all(f.done() and f.exception() is None for f in futures)
    producer.close()
    with pytest.raises(opendms.ClosedError):
        producer.send(b"late")


def test_byte_limit_splits_batches(client: opendms.Client, queue: str):
    body = b"y" * 1024
    with client.producer(queue, linger=0.05, max_batch_bytes=10 * 1024) as producer:
        futures = [producer.send(body) for _ in range(50)]
    assert all(f.result().message_id for f in futures)
    assert client.group_stats(queue, "g").produced == 50


def test_refused_batch_fails_its_futures(client: opendms.Client):
    with client.producer("no-such-queue") as producer:
        f = producer.send(b"x")
    with pytest.raises(opendms.NotFoundError) as e:
        f.result()
    assert e.value.reason == opendms.Reason.QUEUE_NOT_FOUND


def test_unavailable_is_retried_then_fails():
    retry = opendms.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with opendms.Client("127.0.0.1:1", project="p") as c:
        started = time.monotonic()
        with c.producer("q", retry=retry, send_timeout=2) as producer:
            f = producer.send(b"x")
            with pytest.raises(opendms.UnavailableError):
                f.result(timeout=10)
    assert time.monotonic() - started < 10
