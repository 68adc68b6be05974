"""Retry and outcome rules shared by the producers and consumers."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from opendms.errors import DMSError, Redeliver
from opendms.types import AckStatus


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed call is repeated.

    Attributes:
        max_attempts: counts the first call too: 1 means no retry.
        initial_backoff: the pause before the first retry, in seconds; it
            doubles with every retry up to ``max_backoff``, and each pause is
            jittered to between half and all of its value.
        max_backoff: the longest pause, in seconds.
    """

    max_attempts: int = 10
    initial_backoff: float = 0.1
    max_backoff: float = 2.0

    def backoff(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 for the first)."""
        d = min(self.initial_backoff * (2 ** max(retry - 1, 0)), self.max_backoff)
        return jitter(d)


def jitter(d: float) -> float:
    """A pause between d/2 and d, so that many clients do not retry in step."""
    return d / 2 + random.random() * d / 2


#: The failures a consumer's loop outlasts (retrying with backoff) rather
#: than stopping on: those that come and go with the server's health.
_RECOVERABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    }
)


def recoverable(err: BaseException) -> bool:
    return isinstance(err, DMSError) and err.code in _RECOVERABLE


def ack_status_for(exc: BaseException | None) -> AckStatus:
    """The ack that settles a message given its handler's outcome: returned
    (None) is SUCCESS, Redeliver is REDELIVER, any other exception is FAIL."""
    if exc is None:
        return AckStatus.SUCCESS
    if isinstance(exc, Redeliver):
        return AckStatus.REDELIVER
    return AckStatus.FAIL
