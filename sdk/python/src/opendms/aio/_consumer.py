"""The asyncio consumer loop."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import grpc

from opendms._consumer import (
    ACK_RETRY,
    ACK_TIMEOUT,
    IDLE_PAUSE,
    RECEIVE_RETRY,
    ConsumerOptions,
    Extensions,
    Lease,
    extension_timeout,
    log_failure,
)
from opendms._retry import ack_status_for, recoverable
from opendms.errors import DMSError
from opendms.types import MAX_ACKS, Ack, AckStatus, ReceivedMessage

log = logging.getLogger("opendms")


async def handle_outcome(handler: Callable[[ReceivedMessage], Any], m: ReceivedMessage) -> Ack:
    """Runs a handler (awaiting it if it is a coroutine) and returns the ack
    its outcome calls for."""
    try:
        result = handler(m)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - any failure of the handler settles the message
        log_failure(m, e)
        return Ack(m.receipt_handle, ack_status_for(e))
    return Ack(m.receipt_handle, AckStatus.SUCCESS)


class Consumer:
    """The asyncio variant of :class:`opendms.Consumer`: calls ``handler``
    (a coroutine function) for each message of a consumer group, up to
    ``concurrency`` at once as tasks, and acks the outcome: returns →
    SUCCESS, raises :class:`opendms.Redeliver` → REDELIVER, raises anything
    else → FAIL.

    ``await consumer.run()`` runs the loop until :meth:`stop` (callable from a
    handler too); :meth:`start` runs it as a task, and ``async with`` starts
    it on entry and stops it (waiting) on exit. Stopping cancels the receive
    in progress, lets running handlers finish and acks their outcomes.

    As in the sync consumer, the visibility of a message whose handler still
    runs is extended (ChangeVisibility, from a task of its own) every
    ``extension_period`` (default: two thirds of the visibility timeout),
    each time by the visibility timeout, until the handler finishes;
    failures to extend are logged, not raised. ``extend_visibility=False``
    turns this off.
    """

    def __init__(self, client, queue: str, group: str, handler: Callable[[ReceivedMessage], Any], opts: ConsumerOptions) -> None:
        self._client = client
        self._queue, self._group = queue, group
        self._handler = handler
        self._opts = opts.normalized()
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._task: asyncio.Task | None = None
        self._started = False

    def stop(self) -> None:
        """Asks the loop to stop; :meth:`run` returns once it has. Safe to
        call from a handler and before the loop started."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    def start(self) -> "Consumer":
        """Runs the loop as a task of the running event loop."""
        self._task = asyncio.ensure_future(self.run())
        return self

    async def wait(self) -> None:
        """Waits for a loop started with :meth:`start` to finish; raises the
        error that stopped it, if any."""
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        """Stops the loop and waits for it (:meth:`stop` then :meth:`wait`)."""
        self.stop()
        await self.wait()

    async def __aenter__(self) -> "Consumer":
        return self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def run(self) -> None:
        """Receives and handles messages until :meth:`stop`, then waits for
        running handlers and acks their outcomes. Raises the error of a
        receive that cannot be outlasted. May be called once."""
        if self._started:
            raise RuntimeError("Consumer.run called twice")
        self._started = True
        self._stop = asyncio.Event()
        if self._stop_requested:
            return
        opts = self._opts
        free = opts.concurrency
        freed = asyncio.Event()
        handlers: set[asyncio.Task] = set()
        acker = _Acker(self._client, self._queue, self._group)
        extender = None
        if opts.extend_visibility:
            extender = _Extender(self._client, self._queue, self._group, opts.visibility_seconds, opts.extension_period)

        async def handle(m: ReceivedMessage, lease: Lease | None) -> None:
            nonlocal free
            try:
                acker.add(await handle_outcome(self._handler, m))
            finally:
                if lease is not None:
                    extender.remove(lease)  # type: ignore[union-attr]
                free += 1
                freed.set()

        stop_wait = asyncio.ensure_future(self._stop.wait())
        failures = 0
        try:
            while not self._stop.is_set():
                if free == 0:
                    freed.clear()
                    freed_wait = asyncio.ensure_future(freed.wait())
                    await asyncio.wait({stop_wait, freed_wait}, return_when=asyncio.FIRST_COMPLETED)
                    freed_wait.cancel()
                    continue
                taken = min(free, opts.max_messages)
                free -= taken
                received = time.monotonic()  # the visibility timeouts start later
                receiving = asyncio.ensure_future(self._receive(taken))
                await asyncio.wait({receiving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    free += taken
                    await asyncio.gather(receiving, return_exceptions=True)
                    break
                try:
                    msgs = receiving.result()
                except DMSError as e:
                    free += taken
                    if not recoverable(e):
                        log.error("opendms: consumer stops: receive failed: %s", e)
                        raise
                    failures += 1
                    pause = RECEIVE_RETRY.backoff(failures)
                    log.warning("opendms: receive failed, retrying in %.2fs: %s", pause, e)
                    await asyncio.wait({stop_wait}, timeout=pause)
                    continue
                failures = 0
                free += taken - len(msgs)
                for m in msgs:
                    t = asyncio.ensure_future(handle(m, extender.add(m, received) if extender is not None else None))
                    handlers.add(t)
                    t.add_done_callback(handlers.discard)
                if not msgs and opts.wait_time < IDLE_PAUSE:
                    await asyncio.wait({stop_wait}, timeout=IDLE_PAUSE)
        finally:
            stop_wait.cancel()
            if handlers:
                await asyncio.gather(*handlers, return_exceptions=True)
            if extender is not None:
                await extender.close()
            await acker.close()

    async def _receive(self, n: int) -> list[ReceivedMessage]:
        return await self._client.receive(
            self._queue,
            self._group,
            max_messages=n,
            wait_time=self._opts.wait_time,
            visibility_timeout=self._opts.visibility_timeout,
            consumer_id=self._opts.consumer_id,
            tag_filter=self._opts.tag_filter,
        )


class _Acker:
    """Sends a consumer's acks in batches from a task of its own: each call
    takes what piled up while the previous one ran."""

    def __init__(self, client, queue: str, group: str) -> None:
        self._client, self._queue, self._group = client, queue, group
        self._pending: asyncio.Queue[Ack | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def add(self, ack: Ack) -> None:
        self._pending.put_nowait(ack)

    async def close(self) -> None:
        self._pending.put_nowait(None)
        await self._task

    async def _run(self) -> None:
        closing = False
        while not closing:
            first = await self._pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_ACKS and not self._pending.empty():
                a = self._pending.get_nowait()
                if a is None:
                    closing = True
                    break
                batch.append(a)
            await self._send(batch)

    async def _send(self, batch: list[Ack]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                results = await self._client.ack(self._queue, self._group, batch, timeout=ACK_TIMEOUT)
            except DMSError as e:
                if not recoverable(e) or attempt >= ACK_RETRY.max_attempts:
                    log.error("opendms: ack of %d messages failed; they will be delivered again: %s", len(batch), e)
                    return
                await asyncio.sleep(ACK_RETRY.backoff(attempt))
                continue
            for a, r in zip(batch, results):
                if not r.applied:
                    log.warning("opendms: ack %s not applied: %s: %s", a.status.name, r.reason, r.message)
            return


class _Extender:
    """Extends the visibility of a consumer's messages whose handlers still
    run (see :class:`opendms._consumer.Extensions`), from a task of its own."""

    def __init__(self, client, queue: str, group: str, visibility: float, period: float) -> None:
        self._client, self._queue, self._group = client, queue, group
        self._ext = Extensions(visibility, period)
        self._changed = asyncio.Event()
        self._wake_at = math.inf  # when the task wakes by itself; -inf while it calls
        self._task = asyncio.ensure_future(self._run())

    def add(self, m: ReceivedMessage, received: float) -> Lease:
        lease = self._ext.add(m, received)
        if lease.due < self._wake_at:
            self._changed.set()
        return lease

    def remove(self, lease: Lease) -> None:
        self._ext.remove(lease)

    async def close(self) -> None:
        """Stops extending (all handlers have finished), cancelling a call
        in progress: it no longer matters."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            leases = self._ext.take_due(now)
            if not leases:
                due = self._ext.next_due()
                self._wake_at = math.inf if due is None else due
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), None if due is None else due - now)
                except asyncio.TimeoutError:
                    pass
                continue
            self._wake_at = -math.inf
            results, error = None, None
            try:
                results = await self._client.change_visibility(
                    self._queue,
                    self._group,
                    [lease.handle for lease in leases],
                    self._ext.visibility,
                    timeout=extension_timeout(leases, now),
                )
            except DMSError as e:
                error = e
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - never let the task die
                error = DMSError(grpc.StatusCode.UNKNOWN, repr(e))
            self._ext.settle(leases, now, time.monotonic(), results, error)
