"""The synchronous consumer loop."""

from __future__ import annotations

import logging
import queue as _queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from opendms._calls import Call
from opendms._retry import RetryPolicy, ack_status_for, recoverable
from opendms.errors import DMSError, Redeliver
from opendms.types import MAX_ACKS, MAX_RECEIVE_MESSAGES, Ack, AckStatus, Duration, ReceivedMessage, TagFilter

log = logging.getLogger("opendms")

#: The least time between two receives of a consumer that came back empty.
IDLE_PAUSE = 0.2
#: How a consumer retries receives that failed recoverably.
RECEIVE_RETRY = RetryPolicy(initial_backoff=0.1, max_backoff=5.0)
#: How a consumer retries an ack call.
ACK_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0)
#: The timeout of one ack call of a consumer.
ACK_TIMEOUT = 10.0


@dataclass(frozen=True)
class ConsumerOptions:
    """The settings of a consumer loop; see :meth:`opendms.Client.consumer`."""

    concurrency: int = 10
    max_messages: int = MAX_RECEIVE_MESSAGES
    wait_time: float = 20.0
    visibility_timeout: Duration | None = None
    consumer_id: str = ""
    tag_filter: TagFilter | None = None

    def normalized(self) -> "ConsumerOptions":
        return ConsumerOptions(
            concurrency=max(self.concurrency, 1),
            max_messages=min(max(self.max_messages, 1), MAX_RECEIVE_MESSAGES),
            wait_time=min(max(self.wait_time, 0.0), 60.0),
            visibility_timeout=self.visibility_timeout,
            consumer_id=self.consumer_id,
            tag_filter=self.tag_filter,
        )


def handle_outcome(handler: Callable[[ReceivedMessage], Any], m: ReceivedMessage) -> Ack:
    """Runs a handler and returns the ack its outcome calls for."""
    try:
        handler(m)
    except BaseException as e:  # noqa: BLE001 - any failure of the handler settles the message
        log_failure(m, e)
        return Ack(m.receipt_handle, ack_status_for(e))
    return Ack(m.receipt_handle, AckStatus.SUCCESS)


def log_failure(m: ReceivedMessage, e: BaseException) -> None:
    if isinstance(e, Redeliver):
        log.debug("opendms: handler asked to redeliver message %s", m.id)
    else:
        log.warning("opendms: handler failed for message %s: %r", m.id, e, exc_info=e)


class Consumer:
    """Receives the messages of a consumer group in a loop and calls a handler
    for each, up to ``concurrency`` at once (in a thread pool), then acks it
    with the handler's outcome:

    - the handler returns: SUCCESS, the group never gets the message again;
    - it raises :class:`opendms.Redeliver`: REDELIVER, the message comes back
      after the queue's retry delay (30 s);
    - it raises anything else: FAIL, the message is available again at once
      with ``delivery_count`` one higher (and counts toward
      ``max_consume_count`` when dead letters are enabled).

    The loop long-polls (``wait_time``) and asks only for as many messages as
    it has free handlers, so that messages do not wait invisible in the
    client. Acks are sent in batches by a thread of their own.

    :meth:`run` runs the loop in the calling thread until :meth:`stop`;
    :meth:`start` runs it in a background thread; as a context manager the
    consumer starts on entry and stops on exit. Stopping cancels the receive
    in progress, lets running handlers finish and acks their outcomes. A
    receive cancelled by the stop may have been answered by the server
    already; its messages come back after their visibility timeout. The
    server has no call yet to extend a visibility timeout, so handlers must
    finish within it (``visibility_timeout``, default 30 s).

    Failures the loop can outlast (server unreachable or overloaded) are
    logged and retried with backoff; any other failure of a receive (the
    queue or group does not exist, for example) stops the loop and is raised
    by :meth:`run` (or by :meth:`stop` after :meth:`start`).
    """

    def __init__(self, client, queue: str, group: str, handler: Callable[[ReceivedMessage], Any], opts: ConsumerOptions) -> None:
        self._client = client
        self._queue, self._group = queue, group
        self._handler = handler
        self._opts = opts.normalized()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._receiving: grpc.Future | None = None
        self._started = False
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._workers: set[threading.Thread] = set()  # the handler threads

    # --- lifecycle -------------------------------------------------------------

    def run(self) -> None:
        """Receives and handles messages until :meth:`stop`, then waits for the
        running handlers and acks their outcomes. A consumer runs once."""
        self._claim()
        self._run_to_end()

    def start(self) -> "Consumer":
        """Runs the loop in a background thread and returns at once."""
        self._claim()
        self._thread = threading.Thread(target=self._run_in_thread, name="opendms-consumer", daemon=True)
        self._thread.start()
        return self

    def _claim(self) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("a Consumer runs once")
            self._started = True

    def _run_to_end(self) -> None:
        try:
            self._run()
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._finished.set()

    def _run_in_thread(self) -> None:
        try:
            self._run_to_end()
        except BaseException:  # logged by the loop, raised by stop()
            pass

    def stop(self, timeout: float | None = None) -> None:
        """Stops the loop and waits until it has finished (running handlers
        done and their acks sent). Raises the error that stopped a loop
        started with :meth:`start`, and TimeoutError if it did not finish
        within ``timeout``. May be called more than once, from any thread
        (a handler included, which then must not wait: it returns at once)."""
        self._stop.set()
        with self._lock:
            receiving, started = self._receiving, self._started
        if receiving is not None:
            receiving.cancel()
        if not started or threading.current_thread() in self._workers:
            return  # a handler stopping its own consumer must not wait for itself
        if not self._finished.wait(timeout):
            raise TimeoutError("consumer did not stop in time")
        if self._thread is not None and self._error is not None:
            raise self._error

    def __enter__(self) -> "Consumer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the loop --------------------------------------------------------------

    def _run(self) -> None:
        opts = self._opts
        free = threading.Semaphore(opts.concurrency)
        acker = _Acker(self._client, self._queue, self._group)

        def handle(m: ReceivedMessage) -> None:
            self._workers.add(threading.current_thread())
            try:
                acker.add(handle_outcome(self._handler, m))
            finally:
                free.release()

        failures = 0
        with ThreadPoolExecutor(opts.concurrency, thread_name_prefix="opendms-handler") as pool:
            try:
                while not self._stop.is_set():
                    # Wait for one free handler, then take every other free one, so
                    # that a receive asks for no more than can be handled at once.
                    while not free.acquire(timeout=0.1):
                        if self._stop.is_set():
                            return
                    taken = 1
                    while taken < min(opts.concurrency, opts.max_messages) and free.acquire(blocking=False):
                        taken += 1
                    try:
                        msgs = self._receive(taken)
                    except DMSError as e:
                        for _ in range(taken):
                            free.release()
                        if self._stop.is_set():
                            return
                        if not recoverable(e):
                            log.error("opendms: consumer stops: receive failed: %s", e)
                            raise
                        failures += 1
                        pause = RECEIVE_RETRY.backoff(failures)
                        log.warning("opendms: receive failed, retrying in %.2fs: %s", pause, e)
                        self._stop.wait(pause)
                        continue
                    failures = 0
                    for _ in range(taken - len(msgs)):
                        free.release()
                    for m in msgs:
                        pool.submit(handle, m)
                    if not msgs and opts.wait_time < IDLE_PAUSE:
                        self._stop.wait(IDLE_PAUSE)
            finally:
                pool.shutdown(wait=True)
                acker.close()

    def _receive(self, n: int) -> list[ReceivedMessage]:
        call: Call = self._client._calls.receive(
            self._queue,
            self._group,
            max_messages=n,
            wait_time=self._opts.wait_time,
            visibility_timeout=self._opts.visibility_timeout,
            consumer_id=self._opts.consumer_id,
            tag_filter=self._opts.tag_filter,
        )
        with self._lock:
            if self._stop.is_set():
                return []
            fut = self._client._start(call)
            self._receiving = fut
        try:
            return self._client._finish(call, fut)
        except grpc.FutureCancelledError:
            return []
        finally:
            with self._lock:
                self._receiving = None


class _Acker:
    """Sends a consumer's acks in batches from a thread of its own: each call
    takes what piled up while the previous one ran, so acks coalesce under
    load without a linger time."""

    def __init__(self, client, queue: str, group: str) -> None:
        self._client, self._queue, self._group = client, queue, group
        self._pending: _queue.SimpleQueue[Ack | None] = _queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="opendms-acker", daemon=True)
        self._thread.start()

    def add(self, ack: Ack) -> None:
        self._pending.put(ack)

    def close(self) -> None:
        """Sends what is pending and waits; no add may follow."""
        self._pending.put(None)
        self._thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_ACKS:
                try:
                    a = self._pending.get_nowait()
                except _queue.Empty:
                    break
                if a is None:
                    closing = True
                    break
                batch.append(a)
            self._send(batch)

    def _send(self, batch: list[Ack]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                results = self._client.ack(self._queue, self._group, batch, timeout=ACK_TIMEOUT)
            except DMSError as e:
                if not recoverable(e) or attempt >= ACK_RETRY.max_attempts:
                    log.error("opendms: ack of %d messages failed; they will be delivered again: %s", len(batch), e)
                    return
                time.sleep(ACK_RETRY.backoff(attempt))
                continue
            for a, r in zip(batch, results):
                if not r.applied:
                    log.warning("opendms: ack %s not applied: %s: %s", a.status.name, r.reason, r.message)
            return
