"""The synchronous batching producer."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time

import grpc

from opendms import _convert as cv
from opendms._batching import Accumulator, Batch, IdempotenceKeys, ProducerOptions, settle
from opendms._calls import PRODUCER
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms.errors import ClosedError, DMSError, from_rpc_error
from opendms.types import Message, SendResult

log = logging.getLogger("opendms")


class Producer:
    """Sends messages to one queue in batches.

    :meth:`send`, callable from any number of threads, hands a message over
    and returns a ``concurrent.futures.Future`` of its :class:`SendResult`.
    Messages are coalesced into SendMessages calls of up to
    ``max_batch_messages`` (≤ 1000) messages and ``max_batch_bytes``
    (≤ 8 MiB); a batch is sent when it is full, when its ``linger`` time
    passed, or on :meth:`flush` and :meth:`close`. At most ``max_in_flight``
    calls run at once; while they all run, messages keep collecting, so
    batches grow under load. :meth:`send` blocks while ``max_buffered_bytes``
    of messages wait.

    A call that fails with UNAVAILABLE or DEADLINE_EXCEEDED is retried with
    exponential backoff (``retry``). Each batch carries an idempotence key
    (a random producer id and a sequence number), so a retry of a batch
    whose first attempt was stored after all (a timeout, a connection lost
    while the server answered) stores nothing again and returns the first
    attempt's results. **A retry can still duplicate** when the first attempt
    is no longer among the last 100000 messages of its partition (a long
    outage under heavy traffic), when ``idempotent=False``, or against a
    server without idempotence keys; delivery is at least once, and
    consumers that cannot tolerate duplicates deduplicate (for example on an
    id carried in an attribute).

    With ``max_in_flight=1`` the messages of one thread are stored in the
    order it sent them; with more, batches can overtake one another.

    Close the producer (or use it as a context manager) to send what is
    buffered and stop its threads: its threads do not keep the process
    alive, and messages still buffered when the process exits are lost.
    """

    def __init__(self, client, queue: str, opts: ProducerOptions) -> None:
        self._opts = opts.normalized()
        self._queue = client._calls.queue_name(queue)
        self._method = client._stubs[PRODUCER].SendMessages
        self._acc = Accumulator(self._opts)
        self._keys = IdempotenceKeys(self._opts.idempotent)
        self._cond = threading.Condition(threading.Lock())
        self._buffered = 0
        self._flushing = 0
        self._closed = False
        self._abort = threading.Event()  # close gave up: stop retrying, cancel calls
        self._inflight: dict[Batch, grpc.Future | None] = {}
        self._senders = [
            threading.Thread(target=self._sender, name=f"opendms-producer-{i}", daemon=True)
            for i in range(self._opts.max_in_flight)
        ]
        for t in self._senders:
            t.start()

    # --- handing over ----------------------------------------------------------

    def send(self, message: Message | bytes | str, *, timeout: float | None = None) -> concurrent.futures.Future[SendResult]:
        """Hands a message over and returns the future of its result. It
        returns at once unless the buffer is full; then it waits for room, up
        to ``timeout`` seconds (TimeoutError). Raises ClosedError after
        :meth:`close`, and TypeError or ValueError for a message that cannot
        be sent. The future fails with a :class:`DMSError` if the server
        refused the batch or retries ran out."""
        m = cv.as_message(message)
        pm = cv.message_to_proto(m)
        size = m.size
        fut: concurrent.futures.Future[SendResult] = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()  # a send cannot be taken back
        with self._cond:
            weight = self._acc.weight(size)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._closed and self._buffered + weight > self._opts.max_buffered_bytes:
                # Waiting out the linger time would only make the wait longer.
                if self._acc.current is not None:
                    self._acc.seal()
                    self._cond.notify_all()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the producer's buffer stayed full")
                self._cond.wait(remaining)
            if self._closed:
                raise ClosedError("producer closed")
            self._buffered += weight
            if self._acc.add(pm, size, weight, fut, time.monotonic()):
                self._cond.notify_all()
        return fut

    # --- sending ---------------------------------------------------------------

    def _sender(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    b = self._acc.take(now, force=self._closed or self._flushing > 0)
                    if b is not None:
                        self._inflight[b] = None
                        break
                    if self._closed and self._acc.empty():
                        return
                    self._cond.wait(self._acc.wait_time(now))
            try:
                self._send(b)
            finally:
                with self._cond:
                    self._buffered -= b.weight
                    del self._inflight[b]
                    b.done = True
                    self._cond.notify_all()

    def _send(self, b: Batch) -> None:
        # Every attempt carries the batch's key: a retry is stored once.
        req = pb.SendMessagesRequest(queue=self._queue, messages=b.messages, idempotence_key=self._keys.next())
        attempt = 0
        while True:
            attempt += 1
            try:
                results = self._call(b, req)
            except DMSError as e:
                if not e.retryable or attempt >= self._opts.retry.max_attempts or self._abort.is_set():
                    log.warning("opendms: send of %d messages failed after %d attempts: %s", len(b.messages), attempt, e)
                    settle(b, None, e)
                    return
                pause = self._opts.retry.backoff(attempt)
                log.info("opendms: send of %d messages failed, retrying in %.2fs: %s", len(b.messages), pause, e)
                if self._abort.wait(pause):
                    settle(b, None, e)
                    return
                continue
            settle(b, results, None)
            return

    def _call(self, b: Batch, req: pb.SendMessagesRequest) -> list[SendResult]:
        fut = self._method.future(req, timeout=self._opts.send_timeout)
        with self._cond:
            self._inflight[b] = fut
        if self._abort.is_set():
            fut.cancel()
        try:
            resp = fut.result()
        except grpc.FutureCancelledError:
            raise DMSError(grpc.StatusCode.CANCELLED, "producer closed before the send completed") from None
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return cv.send_results(resp)

    # --- flushing and closing --------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Sends every message handed over before the call without waiting
        for linger times, and waits until all of them are settled (raising
        TimeoutError if that takes longer than ``timeout``). Each message's
        outcome is in its future."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            wait = list(self._inflight) + self._acc.pending()
            self._flushing += 1
            self._cond.notify_all()
            try:
                while not all(b.done for b in wait):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("flush timed out")
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Stops taking messages, sends what is buffered and waits until every
        message is settled. If that takes longer than ``timeout`` seconds, the
        calls still running or waiting are cancelled (their futures fail with
        CANCELLED) and TimeoutError is raised. May be called more than once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._senders:
            t.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        if any(t.is_alive() for t in self._senders):
            self._abort.set()
            with self._cond:
                for f in self._inflight.values():
                    if f is not None:
                        f.cancel()
            for t in self._senders:
                t.join()
            raise TimeoutError("producer close timed out; unsent messages failed with CANCELLED")

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
