"""The flow-control and ack bookkeeping of a Subscribe stream, shared by the
sync and asyncio subscriptions. Neither locks nor waits."""

from __future__ import annotations

import datetime as _dt
from collections import deque
from typing import Any

import grpc

from opendms import _convert as cv
from opendms._calls import DEFAULT_VISIBILITY_TIMEOUT
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms.errors import DMSError
from opendms.types import Ack, Duration, ReceivedMessage


class RequestBatcher:
    """Coalesces acks and credit grants into SubscribeRequests: a request
    goes out when it has ``batch_size`` acks, when its first ack waited
    ``interval`` seconds, or at once for a grant with no ack pending."""

    def __init__(self, batch_size: int, interval: float) -> None:
        self.batch_size = max(batch_size, 1)
        self.interval = max(interval, 0.0)
        self.acks: list[Ack] = []
        self.futures: list[Any] = []
        self.credits = 0
        self.first_at = 0.0

    def add_ack(self, ack: Ack, future: Any, now: float, grant: bool) -> None:
        if not self.acks:
            self.first_at = now
        self.acks.append(ack)
        self.futures.append(future)
        if grant:
            self.credits += 1

    def add_credits(self, n: int) -> None:
        self.credits += n

    def due(self, now: float) -> bool:
        if self.acks:
            return len(self.acks) >= self.batch_size or now >= self.first_at + self.interval
        return self.credits > 0

    def wait_time(self, now: float) -> float | None:
        """How long until a request is due; None when nothing is pending."""
        if self.acks:
            return max(self.first_at + self.interval - now, 0.0)
        return 0.0 if self.credits > 0 else None

    def take(self) -> tuple[pb.SubscribeRequest, list[Any]] | None:
        """The pending request and the futures of its acks, if any."""
        if not self.acks and self.credits <= 0:
            return None
        req = pb.SubscribeRequest(credits=self.credits, acks=cv.acks_to_proto(self.acks))
        futures = self.futures
        self.acks, self.futures, self.credits = [], [], 0
        return req, futures


class AckLedger:
    """Matches the ack results of the server's responses to the futures of
    the acks: one response per request that carried acks, in order."""

    def __init__(self) -> None:
        self._sent: deque[list[Any]] = deque()

    def sent(self, futures: list[Any]) -> None:
        if futures:
            self._sent.append(futures)

    def results(self, results) -> None:
        if not self._sent:
            return
        futures = self._sent.popleft()
        for i, f in enumerate(futures):
            if f.done():
                continue
            if i < len(results):
                f.set_result(cv.ack_result_from_proto(results[i]))
            else:
                f.set_exception(DMSError(grpc.StatusCode.INTERNAL, "the server answered fewer ack results than acks"))

    def outstanding(self) -> int:
        return sum(len(x) for x in self._sent)

    def fail_all(self, error: BaseException) -> None:
        while self._sent:
            for f in self._sent.popleft():
                if not f.done():
                    f.set_exception(error)


def visibility_seconds(visibility_timeout: Duration | None) -> float:
    return cv.seconds(visibility_timeout) if visibility_timeout is not None else DEFAULT_VISIBILITY_TIMEOUT


def messages_of(resp: pb.SubscribeResponse, visibility: float) -> list[ReceivedMessage]:
    visible_at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=visibility)
    return [cv.received_from_proto(m, visible_at) for m in resp.messages]


def closed_error() -> DMSError:
    return DMSError(grpc.StatusCode.CANCELLED, "subscription closed before the ack was answered")
