"""The batching state of a producer, shared by the sync and asyncio producers.

It neither locks nor waits: each producer guards it with its own lock and
wakes its senders when :meth:`Accumulator.add` says so.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

import grpc

from opendms._gen.dms.v1 import message_pb2 as pb
from opendms.errors import DMSError
from opendms.types import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, SendResult
from opendms._retry import RetryPolicy

#: What a buffered message costs beyond its bytes.
MESSAGE_OVERHEAD = 64


@dataclass(frozen=True)
class ProducerOptions:
    """The settings of a batching producer; see :meth:`opendms.Client.producer`."""

    linger: float = 0.005
    max_batch_messages: int = MAX_BATCH_MESSAGES
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_in_flight: int = 4
    max_buffered_bytes: int = 64 << 20
    send_timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()
    idempotent: bool = True

    def normalized(self) -> "ProducerOptions":
        max_batch_messages = min(max(self.max_batch_messages, 1), MAX_BATCH_MESSAGES)
        max_batch_bytes = min(max(self.max_batch_bytes, 1), MAX_BATCH_BYTES)
        return ProducerOptions(
            linger=max(self.linger, 0.0),
            max_batch_messages=max_batch_messages,
            max_batch_bytes=max_batch_bytes,
            max_in_flight=max(self.max_in_flight, 1),
            max_buffered_bytes=max(self.max_buffered_bytes, max_batch_bytes),
            send_timeout=self.send_timeout,
            retry=RetryPolicy(max(self.retry.max_attempts, 1), self.retry.initial_backoff, self.retry.max_backoff),
            idempotent=self.idempotent,
        )


class IdempotenceKeys:
    """The idempotence keys of one producer's batches: a random producer id
    and a sequence number, so that a retry of a batch (same key) is stored
    once and batches never share a key."""

    def __init__(self, enabled: bool) -> None:
        self._prefix = secrets.token_hex(12) + "-" if enabled else ""
        self._seq = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._seq)}" if self._prefix else ""


class Batch:
    """Messages collected for one SendMessages call, with their futures."""

    __slots__ = ("messages", "futures", "size", "weight", "deadline", "done", "error")

    def __init__(self, deadline: float) -> None:
        self.messages: list[pb.Message] = []
        self.futures: list[Any] = []
        self.size = 0  # message bytes as the server counts them
        self.weight = 0  # buffer budget held
        self.deadline = deadline  # end of the linger time
        self.done = False
        self.error: BaseException | None = None


class Accumulator:
    """Collects messages into batches of at most max_batch_messages and
    max_batch_bytes. A batch is ready when it is full (sealed), when its
    linger time passed, or when a flush or close forces it."""

    def __init__(self, opts: ProducerOptions) -> None:
        self.opts = opts
        self.current: Batch | None = None
        self.sealed: deque[Batch] = deque()

    def weight(self, size: int) -> int:
        """What a message of size bytes takes from the buffer budget; never
        more than all of it, so that any message fits."""
        return min(size + MESSAGE_OVERHEAD, self.opts.max_buffered_bytes)

    def add(self, message: pb.Message, size: int, weight: int, future: Any, now: float) -> bool:
        """Adds a message; returns whether the senders must be woken (a batch
        was sealed, or a new batch brings a new deadline)."""
        wake = False
        b = self.current
        if b is not None and (len(b.messages) >= self.opts.max_batch_messages or b.size + size > self.opts.max_batch_bytes):
            self.seal()
            wake = True
        if self.current is None:
            self.current = Batch(now + self.opts.linger)
            wake = True
        b = self.current
        b.messages.append(message)
        b.futures.append(future)
        b.size += size
        b.weight += weight
        if len(b.messages) >= self.opts.max_batch_messages or b.size >= self.opts.max_batch_bytes:
            self.seal()
            wake = True
        return wake

    def seal(self) -> None:
        """Makes the collecting batch ready at once."""
        if self.current is not None:
            self.sealed.append(self.current)
            self.current = None

    def take(self, now: float, force: bool) -> Batch | None:
        """The next batch to send, if one is ready."""
        if self.sealed:
            return self.sealed.popleft()
        b = self.current
        if b is not None and (force or now >= b.deadline):
            self.current = None
            return b
        return None

    def wait_time(self, now: float) -> float | None:
        """How long until the collecting batch is ready; None if there is none."""
        if self.current is None:
            return None
        return max(self.current.deadline - now, 0.0)

    def pending(self) -> list[Batch]:
        return list(self.sealed) + ([self.current] if self.current is not None else [])

    def empty(self) -> bool:
        return self.current is None and not self.sealed


def settle(batch: Batch, results: list[SendResult] | None, error: BaseException | None) -> None:
    """Resolves the futures of a batch with its results or its error."""
    if error is None and (results is None or len(results) != len(batch.futures)):
        n = 0 if results is None else len(results)
        error = DMSError(grpc.StatusCode.INTERNAL, f"the server answered {n} results for {len(batch.futures)} messages")
    batch.error = error
    for i, f in enumerate(batch.futures):
        if f.done():  # an asyncio future its caller cancelled
            continue
        if error is not None:
            f.set_exception(error)
        else:
            f.set_result(results[i])
