"""The synchronous streaming subscription."""

from __future__ import annotations

import concurrent.futures
import logging
import queue as _queue
import threading
import time
from collections.abc import Iterator

import grpc

from opendms import _convert as cv
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms._subscribing import AckLedger, RequestBatcher, closed_error, messages_of, visibility_seconds
from opendms.errors import ClosedError, from_rpc_error
from opendms.types import Ack, AckResult, AckStatus, Duration, ReceivedMessage

log = logging.getLogger("opendms")

_CLOSE = object()


class _End:
    """Put in the message queue when the stream ended, with its error."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Subscription:
    """A stream of a consumer group's messages over the Subscribe RPC, with
    flow control: the server sends a message only while this client has a
    credit for it. It starts with ``credits`` and every ack grants one more,
    so at most ``credits`` messages are delivered and not yet acked at once
    (:meth:`grant` adds credits by hand).

    Iterate over it to get the messages (iteration ends when it is closed,
    and raises :class:`DMSError` if the stream fails); settle each with
    :meth:`ack`, which may be called from any thread. Acks are sent on the
    stream in batches (``ack_batch_size`` acks, or after ``ack_interval``
    seconds) and each returns a ``concurrent.futures.Future`` of its
    :class:`AckResult`, with a reason when it was not applied.

    Close it (or use it as a context manager) to send the acks still
    pending, wait for their results and end the stream. Messages delivered to
    this client and not handed out or acked come back to the group after
    their visibility timeout.
    """

    def __init__(
        self,
        stub,
        start: pb.SubscribeRequest,
        visibility_timeout: Duration | None,
        ack_batch_size: int,
        ack_interval: float,
    ) -> None:
        self._visibility = visibility_seconds(visibility_timeout)
        self._batcher = RequestBatcher(ack_batch_size, ack_interval)
        self._ledger = AckLedger()
        self._cond = threading.Condition()
        self._commands: _queue.SimpleQueue = _queue.SimpleQueue()
        self._messages: _queue.SimpleQueue = _queue.SimpleQueue()
        self._closing = False
        self._writer_done = False
        self._ended = False
        self._call = stub.Subscribe(self._requests(start))
        self._reader = threading.Thread(target=self._read, name="opendms-subscription", daemon=True)
        self._reader.start()

    # --- consuming -------------------------------------------------------------

    def __iter__(self) -> Iterator[ReceivedMessage]:
        return self

    def __next__(self) -> ReceivedMessage:
        m = self.get()
        assert m is not None
        return m

    def get(self, timeout: float | None = None) -> ReceivedMessage | None:
        """The next message, waiting up to ``timeout`` seconds (None: no
        limit); None when none came in time. Raises StopIteration once the
        subscription is closed, and the stream's DMSError if it failed."""
        if self._closing:
            raise StopIteration
        try:
            item = self._messages.get(timeout=timeout)
        except _queue.Empty:
            return None
        if isinstance(item, _End):
            self._messages.put(item)  # every later call ends too
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def ack(self, message: ReceivedMessage | Ack | str, status: AckStatus = AckStatus.SUCCESS) -> concurrent.futures.Future[AckResult]:
        """Settles a delivery with ``status`` (SUCCESS, FAIL or REDELIVER)
        and grants one credit. Returns the future of the ack's result; it
        fails with a DMSError if the stream ends before the server answered.
        Raises ClosedError after :meth:`close`."""
        a = cv.as_ack(message, status)
        fut: concurrent.futures.Future[AckResult] = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        with self._cond:
            if self._closing or self._ended:
                raise ClosedError("subscription closed")
            # Under the lock, so that it goes before close's marker.
            self._commands.put((a, fut))
        return fut

    def grant(self, credits: int) -> None:
        """Lets the server send ``credits`` more messages."""
        if credits > 0:
            self._commands.put(credits)

    # --- the stream ------------------------------------------------------------

    def _requests(self, start: pb.SubscribeRequest) -> Iterator[pb.SubscribeRequest]:
        """The client side of the stream; gRPC consumes it in a thread of its
        own, so it may block."""
        yield start
        b = self._batcher
        closing = False
        while not closing:
            try:
                item = self._commands.get(timeout=b.wait_time(time.monotonic()))
            except _queue.Empty:
                item = None
            if item is _CLOSE:
                closing = True
                b.credits = 0  # a closing stream takes no more messages
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
                    with self._cond:
                        self._ledger.sent(futures)
                    yield req
        with self._cond:
            self._writer_done = True
            self._cond.notify_all()

    def _read(self) -> None:
        error: BaseException | None = None
        try:
            for resp in self._call:
                if resp.ack_results:
                    with self._cond:
                        self._ledger.results(resp.ack_results)
                        self._cond.notify_all()
                for m in messages_of(resp, self._visibility):
                    self._messages.put(m)
        except grpc.RpcError as e:
            with self._cond:
                closing = self._closing
            if not (closing and e.code() == grpc.StatusCode.CANCELLED):
                error = from_rpc_error(e)
                log.warning("opendms: subscription ended: %s", error)
        finally:
            with self._cond:
                self._ended = True
                self._ledger.fail_all(error or closed_error())
                self._cond.notify_all()
            self._commands.put(_CLOSE)  # unblocks the request generator
            self._messages.put(_End(error))

    # --- closing ---------------------------------------------------------------

    def close(self, timeout: float | None = 10.0) -> None:
        """Sends the pending acks, waits up to ``timeout`` seconds for their
        results, and ends the stream. Acks not answered by then fail with
        CANCELLED. May be called more than once."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._commands.put(_CLOSE)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ended and not (self._writer_done and self._ledger.outstanding() == 0):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
        # The server ends a stream only when the client goes away.
        self._call.cancel()
        self._reader.join()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
