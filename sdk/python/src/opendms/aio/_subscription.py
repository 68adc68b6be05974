"""The asyncio streaming subscription."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import grpc
import grpc.aio

from opendms import _convert as cv
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms._subscribing import AckLedger, RequestBatcher, closed_error, messages_of, visibility_seconds
from opendms.errors import ClosedError, DMSError, from_rpc_error
from opendms.types import Ack, AckResult, AckStatus, Duration, ReceivedMessage

log = logging.getLogger("opendms")

_CLOSE = object()


def _retrieve(f: asyncio.Future) -> None:
    # An ack whose result nobody awaits must not be reported as an
    # exception never retrieved when its stream fails.
    if not f.cancelled():
        f.exception()


class Subscription:
    """The asyncio variant of :class:`opendms.Subscription`: the Subscribe
    RPC with credits (every ack grants one) and batched acks.

    ``async with client.subscribe(queue, group) as sub:`` then ``async for
    msg in sub:``; settle each message with :meth:`ack`, which returns an
    ``asyncio.Future`` of its :class:`AckResult` (awaiting it is optional).
    Iteration ends when the subscription is closed and raises
    :class:`DMSError` if the stream fails.
    """

    def __init__(
        self,
        stub,
        start: pb.SubscribeRequest,
        visibility_timeout: Duration | None,
        ack_batch_size: int,
        ack_interval: float,
    ) -> None:
        self._stub = stub
        self._start_req = start
        self._visibility = visibility_seconds(visibility_timeout)
        self._batcher = RequestBatcher(ack_batch_size, ack_interval)
        self._ledger = AckLedger()
        self._call: grpc.aio.StreamStreamCall | None = None
        self._commands: asyncio.Queue | None = None
        self._messages: deque[ReceivedMessage] = deque()
        self._arrived: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._closing = False
        self._writer_done = False
        self._ended = False
        self._error: DMSError | None = None

    def _ensure_started(self) -> None:
        if self._call is not None:
            return
        self._commands = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._changed = asyncio.Event()
        self._call = self._stub.Subscribe()
        self._writer = asyncio.ensure_future(self._write())
        self._reader = asyncio.ensure_future(self._read())

    async def __aenter__(self) -> "Subscription":
        self._ensure_started()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- consuming -------------------------------------------------------------

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> ReceivedMessage:
        m = await self.get()
        if m is None:
            raise StopAsyncIteration
        return m

    async def get(self, timeout: float | None = None) -> ReceivedMessage | None:
        """The next message, waiting up to ``timeout`` seconds; None when none
        came in time or the subscription is closed. Raises the stream's
        DMSError if it failed."""
        self._ensure_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._closing or not self._messages:
            if self._ended or self._closing:
                if self._error is not None:
                    raise self._error
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return None
        return self._messages.popleft()

    def ack(self, message: ReceivedMessage | Ack | str, status: AckStatus = AckStatus.SUCCESS) -> asyncio.Future[AckResult]:
        """Settles a delivery and grants one credit; returns the future of the
        ack's result. Raises ClosedError after :meth:`close`."""
        self._ensure_started()
        if self._closing or self._ended:
            raise ClosedError("subscription closed")
        fut: asyncio.Future[AckResult] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._commands.put_nowait((cv.as_ack(message, status), fut))
        return fut

    def grant(self, credits: int) -> None:
        """Lets the server send ``credits`` more messages."""
        self._ensure_started()
        if credits > 0:
            self._commands.put_nowait(credits)

    # --- the stream ------------------------------------------------------------

    async def _write(self) -> None:
        b = self._batcher
        try:
            await self._call.write(self._start_req)
            closing = False
            while not closing:
                try:
                    item = await asyncio.wait_for(self._commands.get(), b.wait_time(time.monotonic()))
                except asyncio.TimeoutError:
                    item = None
                if item is _CLOSE:
                    closing = True
                    b.credits = 0
                elif isinstance(item, int):
                    b.add_credits(item)
                elif item is not None:
                    ack, fut = item
                    b.add_ack(ack, fut, time.monotonic(), grant=True)
                if closing or b.due(time.monotonic()):
                    taken = b.take()
                    if taken is not None:
                        req, futures = taken
                        if closing:
                            req.credits = 0
                        self._ledger.sent(futures)
                        await self._call.write(req)
        except (grpc.RpcError, asyncio.InvalidStateError) as e:
            # The stream ended; the reader reports why.
            log.debug("opendms: subscription writer stopped: %r", e)
        finally:
            self._writer_done = True
            self._changed.set()

    async def _read(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    break
                if resp.ack_results:
                    self._ledger.results(resp.ack_results)
                    self._changed.set()
                msgs = messages_of(resp, self._visibility)
                if msgs:
                    self._messages.extend(msgs)
                    self._arrived.set()
        except asyncio.CancelledError:
            pass
        except grpc.RpcError as e:
            if not (self._closing and e.code() == grpc.StatusCode.CANCELLED):
                self._error = from_rpc_error(e)
                log.warning("opendms: subscription ended: %s", self._error)
        finally:
            self._ended = True
            self._ledger.fail_all(self._error or closed_error())
            self._commands.put_nowait(_CLOSE)
            self._arrived.set()
            self._changed.set()

    # --- closing ---------------------------------------------------------------

    async def close(self, timeout: float | None = 10.0) -> None:
        """Sends the pending acks, waits up to ``timeout`` seconds for their
        results, and ends the stream. May be called more than once."""
        if self._call is None:
            self._closing = True
            return
        if not self._closing:
            self._closing = True
            self._commands.put_nowait(_CLOSE)
            self._arrived.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended and not (self._writer_done and self._ledger.outstanding() == 0):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        # The server ends a stream only when the client goes away.
        self._call.cancel()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)
