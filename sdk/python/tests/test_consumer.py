"""The consumer loop."""

import threading
import time

import pytest

import opendms

from conftest import eventually


def test_failing_handler_gets_the_message_again(client: opendms.Client, queue: str):
    client.send(queue, [b"flaky", b"fine"])
    seen: list[tuple[bytes, int]] = []
    lock = threading.Lock()

    def handler(m: opendms.ReceivedMessage) -> None:
        with lock:
            seen.append((m.body, m.delivery_count))
        if m.body == b"flaky" and m.delivery_count == 1:
            raise RuntimeError("first attempt fails")

    with client.consumer(queue, "g", handler, concurrency=4, wait_time=1) as consumer:
        eventually(lambda: (b"flaky", 2) in seen and (b"fine", 1) in seen, message="redelivery")
        assert isinstance(consumer, opendms.Consumer)
    # Stopped cleanly: the successes were acked before stop returned.
    assert sorted(seen) == [(b"fine", 1), (b"flaky", 1), (b"flaky", 2)]
    stats = client.group_stats(queue, "g")
    assert (stats.consumed, stats.in_flight) == (2, 0)


def test_redeliver_and_concurrency(client: opendms.Client, queue: str):
    client.send(queue, [f"m{i}".encode() for i in range(20)])
    running = 0
    peak = 0
    lock = threading.Lock()
    handled: list[bytes] = []

    def handler(m: opendms.ReceivedMessage) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
            handled.append(m.body)
        if m.body == b"m0":
            raise opendms.Redeliver()

    consumer = client.consumer(queue, "g", handler, concurrency=3, wait_time=0.5).start()
    eventually(lambda: len(handled) >= 20, message="all handled")
    consumer.stop(timeout=10)
    assert peak <= 3 and peak >= 2
    stats = client.group_stats(queue, "g")
    # m0 waits out the retry delay; the others are done.
    assert (stats.consumed, stats.available, stats.in_flight) == (19, 1, 0)


def test_stop_interrupts_a_long_poll(client: opendms.Client, queue: str):
    consumer = client.consumer(queue, "g", lambda m: None, wait_time=20).start()
    time.sleep(0.3)  # in the long poll now
    started = time.monotonic()
    consumer.stop(timeout=5)
    assert time.monotonic() - started < 2


def test_handler_can_stop_its_consumer(client: opendms.Client, queue: str):
    client.send(queue, b"last")
    holder: dict = {}

    def handler(m: opendms.ReceivedMessage) -> None:
        holder["consumer"].stop()

    consumer = client.consumer(queue, "g", handler, wait_time=1)
    holder["consumer"] = consumer
    runner = threading.Thread(target=consumer.run)
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert client.group_stats(queue, "g").consumed == 1


def test_a_missing_group_stops_the_loop_with_its_error(client: opendms.Client, queue: str):
    consumer = client.consumer(queue, "nobody", lambda m: None, wait_time=0.2)
    with pytest.raises(opendms.NotFoundError):
        consumer.run()


def test_stop_raises_the_error_of_a_started_loop(client: opendms.Client, queue: str):
    consumer = client.consumer(queue, "nobody", lambda m: None, wait_time=0.2).start()
    eventually(lambda: consumer._finished.is_set(), message="loop ended")
    with pytest.raises(opendms.NotFoundError):
        consumer.stop(timeout=5)
    with pytest.raises(RuntimeError):
        consumer.run()
