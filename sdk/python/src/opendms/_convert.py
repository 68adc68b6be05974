"""Conversions between the generated protobuf messages and the types of
opendms.types, shared by the sync and asyncio clients."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping

from google.protobuf import duration_pb2, timestamp_pb2

from opendms._gen.dms.v1 import error_reason_pb2 as epb
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms._gen.dms.v1 import queue_pb2 as qpb
from opendms.types import (
    Ack,
    AckResult,
    AckStatus,
    BroadcastOptions,
    CancelResult,
    ConsumerGroup,
    DeadLetterInfo,
    Duration,
    GroupStats,
    Message,
    Queue,
    QueueMode,
    ReceivedMessage,
    RedriveResult,
    RescheduleResult,
    SendResult,
    TagFilter,
    TagMatch,
)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def seconds(d: Duration | None) -> float | None:
    """A duration as seconds; None stays None."""
    if d is None:
        return None
    if isinstance(d, _dt.timedelta):
        return d.total_seconds()
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return float(d)
    raise TypeError(f"a duration is seconds (a number) or a timedelta, not {type(d).__name__}")


def duration_to_proto(d: Duration | None) -> duration_pb2.Duration | None:
    s = seconds(d)
    if s is None:
        return None
    out = duration_pb2.Duration()
    out.FromTimedelta(_dt.timedelta(seconds=s))
    return out


def duration_from_proto(d: duration_pb2.Duration) -> _dt.timedelta:
    return _dt.timedelta(seconds=d.seconds, microseconds=d.nanos // 1000)


def time_from_proto(msg, field: str) -> _dt.datetime | None:
    if not msg.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, field)
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


def time_to_proto(t: _dt.datetime) -> timestamp_pb2.Timestamp:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (for example datetime.now(timezone.utc))")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


# --- messages -----------------------------------------------------------------


def as_message(m: Message | bytes | str) -> Message:
    if isinstance(m, Message):
        return m
    if isinstance(m, (bytes, bytearray, memoryview, str)):
        return Message(bytes(m) if not isinstance(m, str) else m)
    raise TypeError(f"a message is a opendms.Message, bytes or str, not {type(m).__name__}")


def attribute_to_proto(name: str, v) -> pb.AttributeValue:
    # bool first: it is an int too.
    if isinstance(v, bool):
        return pb.AttributeValue(bool_value=v)
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise ValueError(f"attribute {name!r}: integer {v} does not fit in 64 bits")
        return pb.AttributeValue(int_value=v)
    if isinstance(v, float):
        return pb.AttributeValue(double_value=v)
    if isinstance(v, str):
        return pb.AttributeValue(string_value=v)
    raise TypeError(f"attribute {name!r}: values of type {type(v).__name__} cannot be sent; use str, bool, int or float")


def message_to_proto(m: Message) -> pb.Message:
    # Field by field: cheaper than keyword arguments on the producer's hot path.
    out = pb.Message()
    out.body = m.body
    if m.tags:
        out.tags.extend(m.tags)
    if m.ordering_key:
        out.ordering_key = m.ordering_key
    for name, v in m.attributes.items():
        out.attributes[name].CopyFrom(attribute_to_proto(name, v))
    if m.delay is not None:
        out.delay.CopyFrom(duration_to_proto(m.delay))
    if m.deliver_time is not None:
        out.deliver_time.CopyFrom(time_to_proto(m.deliver_time))
    return out


def attributes_from_proto(attrs: Mapping[str, pb.AttributeValue]) -> dict:
    out = {}
    for name, v in attrs.items():
        kind = v.WhichOneof("kind")
        if kind is not None:
            out[name] = getattr(v, kind)
    return out


def send_results(resp: pb.SendMessagesResponse) -> list[SendResult]:
    return [
        SendResult(r.message_id, r.partition, r.offset, r.schedule_id, time_from_proto(r, "deliver_time"))
        for r in resp.results
    ]


def cancel_results(resp: pb.CancelScheduledMessagesResponse) -> list[CancelResult]:
    return [CancelResult(r.schedule_id, r.cancelled, r.error_reason, r.error_message) for r in resp.results]


def reschedule_result(resp: pb.RescheduleMessageResponse) -> RescheduleResult:
    return RescheduleResult(resp.schedule_id, resp.message_id, time_from_proto(resp, "deliver_time"))


def dead_letter_from_proto(d: pb.DeadLetterInfo) -> DeadLetterInfo:
    return DeadLetterInfo(
        failure_count=d.failure_count,
        last_failure_reason=d.last_failure_reason,
        dead_letter_time=time_from_proto(d, "dead_letter_time"),
        source_partition=d.source_partition,
        source_offset=d.source_offset,
    )


def received_from_proto(rm: pb.ReceivedMessage, visible_at: _dt.datetime) -> ReceivedMessage:
    m = rm.message
    return ReceivedMessage(
        id=rm.message_id,
        receipt_handle=rm.receipt_handle,
        body=m.body,
        attributes=attributes_from_proto(m.attributes),
        tags=tuple(m.tags),
        ordering_key=m.ordering_key,
        partition=rm.partition,
        offset=rm.offset,
        publish_time=time_from_proto(rm, "publish_time"),
        delivery_count=rm.delivery_count,
        visible_at=visible_at,
        dead_letter=dead_letter_from_proto(rm.dead_letter) if rm.HasField("dead_letter") else None,
    )


# --- acks ---------------------------------------------------------------------


def as_ack(a: Ack | ReceivedMessage, status: AckStatus | None = None) -> Ack:
    if isinstance(a, ReceivedMessage):
        return Ack(a.receipt_handle, status or AckStatus.SUCCESS)
    if isinstance(a, Ack):
        return a if status is None else Ack(a.receipt_handle, status)
    if isinstance(a, str):
        return Ack(a, status or AckStatus.SUCCESS)
    raise TypeError(f"an ack is a opendms.Ack, a ReceivedMessage or a receipt handle, not {type(a).__name__}")


def receipt_handle_of(h: str | ReceivedMessage | Ack) -> str:
    if isinstance(h, str):
        return h
    if isinstance(h, (ReceivedMessage, Ack)):
        return h.receipt_handle
    raise TypeError(f"a receipt handle is a str, a ReceivedMessage or an Ack, not {type(h).__name__}")


def acks_to_proto(acks: Iterable[Ack]) -> list[pb.Ack]:
    return [pb.Ack(receipt_handle=a.receipt_handle, status=int(a.status)) for a in acks]


def ack_result_from_proto(r: pb.AckResult) -> AckResult:
    # The enum is authoritative; servers from before it sent only the name,
    # and a value newer than these stubs keeps its name too.
    reason = r.error_reason
    if r.reason in epb.ErrorReason.values() and r.reason != epb.ERROR_REASON_UNSPECIFIED:
        reason = epb.ErrorReason.Name(r.reason).removeprefix("ERROR_REASON_")
    return AckResult(r.applied, reason, r.error_message)


def redrive_result_from_proto(r: pb.RedriveResult) -> RedriveResult:
    return RedriveResult(r.message_id, r.redriven, r.error_reason, r.error_message)


# --- filters ------------------------------------------------------------------


def tag_filter_to_proto(f: TagFilter | None) -> pb.TagFilter | None:
    if f is None:
        return None
    return pb.TagFilter(tags=list(f.tags), match=int(f.match))


def tag_filter_from_proto(f: pb.TagFilter) -> TagFilter:
    return TagFilter(tuple(f.tags), TagMatch(f.match) if f.match else TagMatch.ANY)


def broadcast_to_proto(b: BroadcastOptions | None) -> pb.BroadcastOptions | None:
    if b is None:
        return None
    return pb.BroadcastOptions(start=int(b.start), auto_ack=b.auto_ack)


# --- admin --------------------------------------------------------------------


def _mode(v: int) -> QueueMode | int:
    try:
        return QueueMode(v)
    except ValueError:  # a mode newer than this client
        return v


def queue_from_proto(q: qpb.Queue) -> Queue:
    return Queue(
        name=q.name,
        id=q.id,
        display_name=q.display_name,
        description=q.description,
        mode=_mode(q.mode),
        partitions=q.partition_count,
        retention=duration_from_proto(q.retention) if q.HasField("retention") else None,
        dead_letters=q.dead_letter_enabled,
        max_consume_count=q.max_consume_count,
        create_time=time_from_proto(q, "create_time"),
        message_count=q.message_count,
        group_count=q.group_count,
        max_message_bytes=q.max_message_bytes,
        scheduled_message_count=q.scheduled_message_count,
        next_scheduled_time=time_from_proto(q, "next_scheduled_time"),
    )


def stats_from_proto(s: qpb.ConsumerGroupStats) -> GroupStats:
    return GroupStats(
        produced=s.produced_messages,
        consumed=s.consumed_messages,
        available=s.available_messages,
        in_flight=s.in_flight_messages,
        produced_dead_letters=s.produced_dead_letters,
        available_dead_letters=s.available_dead_letters,
        oldest_unacked_age=duration_from_proto(s.oldest_unacked_age),
    )


def group_from_proto(g: qpb.ConsumerGroup) -> ConsumerGroup:
    return ConsumerGroup(
        name=g.name,
        id=g.id,
        display_name=g.display_name,
        create_time=time_from_proto(g, "create_time"),
        stats=stats_from_proto(g.stats),
        tag_filter=tag_filter_from_proto(g.tag_filter) if g.HasField("tag_filter") else None,
    )
