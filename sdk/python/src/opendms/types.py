"""The plain Python types of the DMS client: what is sent, received and managed.

Durations are given as seconds (``float``) or ``datetime.timedelta`` and come
back as ``timedelta``; times come back as timezone-aware ``datetime`` in UTC.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

#: A message attribute value: a string, a bool, an integer (64 bits) or a float.
AttributeValue = Union[str, bool, int, float]

#: A duration: seconds, or a timedelta.
Duration = Union[float, int, _dt.timedelta]

# Limits of the server that this package plans around.
#: The most messages one send may carry.
MAX_BATCH_MESSAGES = 1000
#: The most bytes of messages (see :attr:`Message.size`) one send may carry.
MAX_BATCH_BYTES = 8 << 20
#: The most messages one receive may ask for.
MAX_RECEIVE_MESSAGES = 1000
#: The most acks one ack call carries (more are split over several calls).
MAX_ACKS = 1000


class QueueMode(enum.IntEnum):
    """How a queue orders and stores its messages (``dms.v1.QueueMode``)."""

    #: Not set; the server treats it as NORMAL.
    UNSPECIFIED = 0
    #: Several partitions; order is kept within a partition.
    NORMAL = 1
    #: One strict order for the whole queue: a group is not given message
    #: n+1 while message n is in flight.
    FIFO = 2
    #: For Kafka clients; writes are flushed before they are acknowledged.
    KAFKA_HA = 3
    #: For Kafka clients; writes are acknowledged once written and flushed
    #: shortly after, for throughput.
    KAFKA_HT = 4
    #: For AMQP clients.
    AMQP = 5


class AckStatus(enum.IntEnum):
    """How a delivery is settled (``dms.v1.AckStatus``)."""

    #: Processed: the group never gets the message again.
    SUCCESS = 1
    #: Not processed: available to the group again at once; the attempt
    #: counts as failed (toward max_consume_count with dead letters on).
    FAIL = 2
    #: Not processed, try later: available again no sooner than the queue's
    #: retry delay (30 s); the attempt counts as failed.
    REDELIVER = 3


class TagMatch(enum.IntEnum):
    """How a tag filter matches a message's tags (``dms.v1.TagMatch``)."""

    #: At least one of the tags.
    ANY = 1
    #: Every one of the tags.
    ALL = 2


class BroadcastStart(enum.IntEnum):
    """Where a broadcast consumer the server does not know yet starts."""

    #: The earliest retained message.
    EARLIEST = 1
    #: The position the server kept for the consumer id (earliest if none).
    COMMITTED = 2
    #: After the last message stored so far.
    LATEST = 3


class SeekPosition(enum.IntEnum):
    """A named position of every partition, for :meth:`Client.seek`."""

    #: The earliest retained message.
    EARLIEST = 1
    #: After the last message stored so far.
    LATEST = 2


def _attribute_size(attributes: Mapping[str, AttributeValue]) -> int:
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + 8
        if isinstance(value, str):
            size += len(value.encode())
    return size


@dataclass(frozen=True)
class Message:
    """A message to send.

    Attributes:
        body: the payload, any bytes (a ``str`` is encoded as UTF-8). Body
            and attributes together are at most the queue's
            ``max_message_bytes`` (512 KiB).
        attributes: named values that travel with the message; names are 1 to
            64 characters; values are ``str``, ``bool``, ``int`` (64 bits) or
            ``float``.
        tags: up to 3 tags, each 1 to 64 characters of ``[A-Za-z0-9_-]``,
            that consumer groups can filter on.
        ordering_key: optional, at most 128 bytes: on a FIFO queue messages
            with one key are delivered in order, keys in parallel; on a NORMAL
            queue the key picks the partition.
        delay: keeps the message from consumers for this long after the send
            (0 to 7 days): a scheduled message, whose
            :attr:`SendResult.schedule_id` cancels or reschedules it. Only
            NORMAL and FIFO queues take them (DELAY_NOT_ALLOWED otherwise).
        deliver_time: when the message becomes visible, a timezone-aware
            datetime at most 7 days ahead; set at most one of ``delay`` and
            ``deliver_time`` (DELAY_INVALID otherwise).
    """

    body: bytes = b""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    tags: Sequence[str] = ()
    ordering_key: str = ""
    delay: Duration | None = None
    deliver_time: _dt.datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode())
        if isinstance(self.tags, str):
            raise TypeError("tags must be a sequence of strings, not a string")
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def size(self) -> int:
        """The size the server counts against its message and batch limits:
        the body plus, per attribute, the name, 8 bytes and a string value."""
        return len(self.body) + _attribute_size(self.attributes)


@dataclass(frozen=True)
class SendResult:
    """Where a sent message was stored."""

    #: The id the server assigned.
    message_id: str
    #: The partition that holds the message.
    partition: int
    #: The message's offset within the partition.
    offset: int
    #: For a scheduled message (sent with a delay or deliver time), the id
    #: that cancels or reschedules it; empty otherwise.
    schedule_id: str = ""
    #: For a scheduled message, when it becomes visible.
    deliver_time: _dt.datetime | None = None


@dataclass(frozen=True)
class CancelResult:
    """The outcome of cancelling one scheduled message."""

    schedule_id: str
    #: Whether it was cancelled; if not, ``reason`` says why (for example
    #: SCHEDULE_NOT_FOUND or SCHEDULE_ALREADY_RELEASED).
    cancelled: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RescheduleResult:
    """A rescheduled message."""

    #: The message's new schedule id; the old one is no longer valid.
    schedule_id: str
    message_id: str
    #: When it becomes visible now.
    deliver_time: _dt.datetime | None = None


@dataclass(frozen=True)
class TagFilter:
    """Selects messages by their tags: one to three tags, matched ANY (at
    least one) or ALL."""

    tags: Sequence[str]
    match: TagMatch = TagMatch.ANY

    def __post_init__(self) -> None:
        tags = (self.tags,) if isinstance(self.tags, str) else tuple(self.tags)
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "match", TagMatch(self.match))


@dataclass(frozen=True)
class BroadcastOptions:
    """Makes a receive a broadcast receive: the consumer (named by the
    receive's ``consumer_id``, required) gets every message of the queue by
    itself instead of sharing them with the group's other consumers.

    Attributes:
        start: where a consumer the server does not know yet starts.
        auto_ack: acknowledge every message as it is delivered: nothing needs
            to be acked and nothing is delivered twice to this consumer unless
            the server crashes mid-receive.
    """

    start: BroadcastStart = BroadcastStart.COMMITTED
    auto_ack: bool = False


@dataclass(frozen=True)
class Queue:
    """A queue as the server describes it."""

    #: Resource name, ``projects/{project}/queues/{id}``.
    name: str
    #: The UUID assigned at creation.
    id: str
    #: The name given at creation.
    display_name: str
    description: str
    mode: QueueMode
    partitions: int
    #: How long messages are kept; None when the server did not say.
    retention: _dt.timedelta | None
    #: Whether messages that failed max_consume_count times become dead letters.
    dead_letters: bool
    max_consume_count: int
    create_time: _dt.datetime | None
    #: Number of messages currently retained.
    message_count: int
    #: Number of consumer groups.
    group_count: int
    #: Largest accepted message (body plus attributes), in bytes.
    max_message_bytes: int
    #: Scheduled messages (sent with a delay) not released yet.
    scheduled_message_count: int = 0
    #: When the next scheduled message is due; None when none is pending.
    next_scheduled_time: _dt.datetime | None = None


@dataclass(frozen=True)
class QueuePage:
    """One page of :meth:`Client.list_queues_page`."""

    queues: list[Queue]
    #: Pass as page_token for the next page; ``""`` on the last page.
    next_page_token: str
    #: Number of queues in the project.
    total_size: int


@dataclass(frozen=True)
class GroupStats:
    """What a consumer group has done with its queue."""

    #: Messages retained in the queue.
    produced: int = 0
    #: Retained messages the group acknowledged successfully.
    consumed: int = 0
    #: Retained messages the group has not acknowledged, in flight or not.
    available: int = 0
    #: Messages delivered and not yet acknowledged.
    in_flight: int = 0
    #: Dead letters of the group still retained.
    produced_dead_letters: int = 0
    #: Dead letters not acknowledged yet.
    available_dead_letters: int = 0
    #: Age of the oldest message the group has not acknowledged; zero if none.
    oldest_unacked_age: _dt.timedelta = _dt.timedelta(0)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group as the server describes it."""

    #: Resource name, ``projects/{project}/queues/{queue id}/groups/{id}``.
    name: str
    #: ``g-`` followed by a UUID.
    id: str
    display_name: str
    create_time: _dt.datetime | None
    stats: GroupStats
    #: The group's tag filter, once a receive set it.
    tag_filter: TagFilter | None


@dataclass(frozen=True)
class Ack:
    """Settles one delivery; :meth:`ReceivedMessage.success` and friends build them."""

    receipt_handle: str
    status: AckStatus = AckStatus.SUCCESS


@dataclass(frozen=True)
class AckResult:
    """The outcome of one ack.

    Attributes:
        applied: whether the ack took effect.
        reason: why not, when not applied: a stable reason such as
            ``Reason.RECEIPT_HANDLE_EXPIRED`` (the visibility timeout had
            passed, the delivery was settled already, or the message was
            delivered again).
        message: why not, for people.
    """

    applied: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class DeadLetterInfo:
    """Why a message became a dead letter."""

    #: How many times consuming it failed.
    failure_count: int
    #: FAILED_BY_CONSUMER, VISIBILITY_TIMEOUT or REDELIVER_REQUESTED.
    last_failure_reason: str
    dead_letter_time: _dt.datetime | None
    #: The partition of the queue that holds the original message.
    source_partition: int
    #: The original message's offset in that partition.
    source_offset: int


@dataclass(frozen=True)
class ReceivedMessage:
    """One delivery of a message to a consumer group. Settle it (ack) before
    ``visible_at``, or the group gets it again.

    Attributes:
        id: the message id assigned when it was sent.
        receipt_handle: the opaque token that settles this delivery; valid
            only for the group it was issued to and only for this delivery.
        body, attributes, tags, ordering_key: the message as it was sent.
        partition, offset: where the message is stored (for a dead letter:
            in the dead-letter queue; see ``dead_letter`` for the source).
        publish_time: when the message was stored.
        delivery_count: how many times the message has been delivered to the
            group, this delivery included: 1 the first time.
        visible_at: when, unless settled, the message becomes available to the
            group again, as estimated by this client (the receive's start plus
            the visibility timeout).
        dead_letter: set on dead letters: why the message became one.
    """

    id: str
    receipt_handle: str
    body: bytes
    attributes: Mapping[str, AttributeValue]
    tags: tuple[str, ...]
    ordering_key: str
    partition: int
    offset: int
    publish_time: _dt.datetime | None
    delivery_count: int
    visible_at: _dt.datetime
    dead_letter: DeadLetterInfo | None = None

    def success(self) -> Ack:
        """The ack that settles this delivery as processed."""
        return Ack(self.receipt_handle, AckStatus.SUCCESS)

    def fail(self) -> Ack:
        """The ack that settles this delivery as failed: available again at once."""
        return Ack(self.receipt_handle, AckStatus.FAIL)

    def redeliver(self) -> Ack:
        """The ack that asks for this message again later (after the retry delay)."""
        return Ack(self.receipt_handle, AckStatus.REDELIVER)

    @property
    def message(self) -> Message:
        """The message as it was sent, ready to be sent again."""
        return Message(self.body, dict(self.attributes), self.tags, self.ordering_key)


@dataclass(frozen=True)
class RedriveResult:
    """The outcome of redriving one dead letter."""

    message_id: str
    #: Whether the message is available to the group again.
    redriven: bool
    #: When not redriven: a stable reason, such as MESSAGE_EXPIRED.
    reason: str = ""
    message: str = ""
