"""The asyncio batching producer."""

from __future__ import annotations

import asyncio
import logging
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
    """The asyncio variant of :class:`opendms.Producer`: the same batching,
    limits, retries and idempotence keys (**a retry can still duplicate**
    past the server's idempotence window; see there), with sender tasks
    instead of threads.

    ``fut = await producer.send(msg)`` hands a message over (waiting only
    while the buffer is full) and returns an ``asyncio.Future`` of its
    :class:`SendResult`; ``await fut`` for the outcome, or use
    :meth:`send_and_wait`. Use it inside the event loop that runs it; close
    it with ``await producer.close()`` or ``async with``.
    """

    def __init__(self, client, queue: str, opts: ProducerOptions) -> None:
        self._opts = opts.normalized()
        self._queue = client._calls.queue_name(queue)
        self._method = client._stubs[PRODUCER].SendMessages
        self._acc = Accumulator(self._opts)
        self._keys = IdempotenceKeys(self._opts.idempotent)
        self._buffered = 0
        self._flushing = 0
        self._closed = False
        self._aborted = False
        self._inflight: dict[Batch, asyncio.Task | None] = {}
        self._senders: list[asyncio.Task] = []
        # Set whenever the state changed; waiters clear it before they wait
        # (no await in between, so no wake-up is lost).
        self._changed: asyncio.Event | None = None

    def _start(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
            self._senders = [asyncio.create_task(self._sender()) for _ in range(self._opts.max_in_flight)]
        return self._changed

    async def _wait_change(self, timeout: float | None) -> None:
        changed = self._start()
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # --- handing over ----------------------------------------------------------

    async def send(self, message: Message | bytes | str, *, timeout: float | None = None) -> asyncio.Future[SendResult]:
        """Hands a message over and returns the future of its result; waits
        (up to ``timeout``, then TimeoutError) only while the buffer is full.
        Raises ClosedError after :meth:`close`."""
        m = cv.as_message(message)
        pm = cv.message_to_proto(m)
        size = m.size
        self._start()
        weight = self._acc.weight(size)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed and self._buffered + weight > self._opts.max_buffered_bytes:
            if self._acc.current is not None:
                self._acc.seal()
                self._notify()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("the producer's buffer stayed full")
            await self._wait_change(remaining)
        if self._closed:
            raise ClosedError("producer closed")
        self._buffered += weight
        fut: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        if self._acc.add(pm, size, weight, fut, time.monotonic()):
            self._notify()
        return fut

    async def send_and_wait(self, message: Message | bytes | str) -> SendResult:
        """Sends a message and waits for its result."""
        return await (await self.send(message))

    # --- sending ---------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            now = time.monotonic()
            b = self._acc.take(now, force=self._closed or self._flushing > 0)
            if b is None:
                if self._closed and self._acc.empty():
                    return
                await self._wait_change(self._acc.wait_time(now))
                continue
            self._inflight[b] = None
            try:
                await self._send(b)
            finally:
                self._buffered -= b.weight
                del self._inflight[b]
                b.done = True
                self._notify()

    async def _send(self, b: Batch) -> None:
        # Every attempt carries the batch's key: a retry is stored once.
        req = pb.SendMessagesRequest(queue=self._queue, messages=b.messages, idempotence_key=self._keys.next())
        attempt = 0
        while True:
            attempt += 1
            try:
                results = await self._call(b, req)
            except DMSError as e:
                if not e.retryable or attempt >= self._opts.retry.max_attempts or self._aborted:
                    log.warning("opendms: send of %d messages failed after %d attempts: %s", len(b.messages), attempt, e)
                    settle(b, None, e)
                    return
                pause = self._opts.retry.backoff(attempt)
                log.info("opendms: send of %d messages failed, retrying in %.2fs: %s", len(b.messages), pause, e)
                await asyncio.sleep(pause)
                continue
            settle(b, results, None)
            return

    async def _call(self, b: Batch, req: pb.SendMessagesRequest) -> list[SendResult]:
        if self._aborted:
            raise DMSError(grpc.StatusCode.CANCELLED, "producer closed before the send completed")
        task = asyncio.ensure_future(self._method(req, timeout=self._opts.send_timeout))
        self._inflight[b] = task
        try:
            resp = await task
        except asyncio.CancelledError:
            if self._aborted:
                raise DMSError(grpc.StatusCode.CANCELLED, "producer closed before the send completed") from None
            raise
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return cv.send_results(resp)

    # --- flushing and closing --------------------------------------------------

    async def flush(self, timeout: float | None = None) -> None:
        """Sends everything handed over so far without waiting for linger
        times and waits until it is settled (TimeoutError after ``timeout``)."""
        wait = list(self._inflight) + self._acc.pending()
        self._flushing += 1
        self._notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not all(b.done for b in wait):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("flush timed out")
                await self._wait_change(remaining)
        finally:
            self._flushing -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Stops taking messages, sends what is buffered and waits until every
        message is settled; after ``timeout`` the remaining sends are
        cancelled (their futures fail with CANCELLED) and TimeoutError is
        raised. May be called more than once."""
        self._closed = True
        self._notify()
        if not self._senders:
            return
        done, pending = await asyncio.wait(self._senders, timeout=timeout)
        if pending:
            self._aborted = True
            for t in self._inflight.values():
                if t is not None:
                    t.cancel()
            self._notify()
            await asyncio.wait(self._senders)
            raise TimeoutError("producer close timed out; unsent messages failed with CANCELLED")

    async def __aenter__(self) -> "Producer":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
