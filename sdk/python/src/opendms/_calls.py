"""The calls of the DMS API as data: for each operation, the request to send
and how to read the response. The sync and asyncio clients differ only in how
they invoke a Call, so validation and conversion live here once."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opendms import _convert as cv
from opendms._gen.dms.v1 import message_pb2 as pb
from opendms._gen.dms.v1 import queue_pb2 as qpb
from opendms.types import (
    MAX_ACKS,
    Ack,
    AckResult,
    AckStatus,
    BroadcastOptions,
    CancelResult,
    ConsumerGroup,
    Duration,
    GroupStats,
    Message,
    Queue,
    QueueMode,
    QueuePage,
    ReceivedMessage,
    RedriveResult,
    RescheduleResult,
    SeekPosition,
    SendResult,
    TagFilter,
)

T = TypeVar("T")

QUEUES, PRODUCER, CONSUMER = "queues", "producer", "consumer"

#: How long past its wait time a receive may take before it is given up, so
#: that a connection lost without notice does not stall a consumer.
RECEIVE_GRACE = 30.0

#: The server's visibility timeout when a receive names none.
DEFAULT_VISIBILITY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One RPC: the stub (QUEUES, PRODUCER or CONSUMER) and method, the
    request, how to turn the response into the result, and the timeout."""

    service: str
    method: str
    request: Any
    parse: Callable[[Any], T]
    timeout: float | None


def _pick_timeout(explicit: Duration | None, default: float | None) -> float | None:
    return cv.seconds(explicit) if explicit is not None else default


class Calls:
    """Builds the calls of one project."""

    def __init__(self, project: str, default_timeout: float | None) -> None:
        if not project:
            raise ValueError("a project id is required")
        self.project = project
        self.default_timeout = default_timeout

    # --- names -----------------------------------------------------------------

    @property
    def parent(self) -> str:
        return f"projects/{self.project}"

    def queue_name(self, queue: str) -> str:
        if not queue:
            raise ValueError("a queue (display name or id) is required")
        return f"projects/{self.project}/queues/{queue}"

    def group_name(self, queue: str, group: str) -> str:
        if not group:
            raise ValueError("a consumer group (display name or id) is required")
        return f"{self.queue_name(queue)}/groups/{group}"

    def _t(self, timeout: Duration | None) -> float | None:
        return _pick_timeout(timeout, self.default_timeout)

    # --- queues and groups -----------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        description: str = "",
        mode: QueueMode | int = QueueMode.UNSPECIFIED,
        partitions: int = 0,
        retention: Duration | None = None,
        dead_letters: bool = False,
        max_consume_count: int = 0,
        timeout: Duration | None = None,
    ) -> Call[Queue]:
        q = qpb.Queue(
            display_name=name,
            description=description,
            mode=int(mode),
            partition_count=partitions,
            dead_letter_enabled=dead_letters,
            max_consume_count=max_consume_count,
        )
        if retention is not None:
            q.retention.CopyFrom(cv.duration_to_proto(retention))
        req = qpb.CreateQueueRequest(parent=self.parent, queue=q)
        return Call(QUEUES, "CreateQueue", req, lambda r: cv.queue_from_proto(r.queue), self._t(timeout))

    def get_queue(self, queue: str, timeout: Duration | None = None) -> Call[Queue]:
        req = qpb.GetQueueRequest(name=self.queue_name(queue))
        return Call(QUEUES, "GetQueue", req, lambda r: cv.queue_from_proto(r.queue), self._t(timeout))

    def list_queues_page(self, page_size: int = 0, page_token: str = "", timeout: Duration | None = None) -> Call[QueuePage]:
        req = qpb.ListQueuesRequest(parent=self.parent, page_size=page_size, page_token=page_token)

        def parse(r: qpb.ListQueuesResponse) -> QueuePage:
            return QueuePage([cv.queue_from_proto(q) for q in r.queues], r.next_page_token, r.total_size)

        return Call(QUEUES, "ListQueues", req, parse, self._t(timeout))

    def delete_queue(self, queue: str, timeout: Duration | None = None) -> Call[None]:
        req = qpb.DeleteQueueRequest(name=self.queue_name(queue))
        return Call(QUEUES, "DeleteQueue", req, lambda r: None, self._t(timeout))

    def create_group(self, queue: str, name: str, timeout: Duration | None = None) -> Call[ConsumerGroup]:
        req = qpb.CreateConsumerGroupRequest(parent=self.queue_name(queue), group=qpb.ConsumerGroup(display_name=name))
        return Call(QUEUES, "CreateConsumerGroup", req, lambda r: cv.group_from_proto(r.group), self._t(timeout))

    def get_group(self, queue: str, group: str, timeout: Duration | None = None) -> Call[ConsumerGroup]:
        req = qpb.GetConsumerGroupRequest(name=self.group_name(queue, group))
        return Call(QUEUES, "GetConsumerGroup", req, lambda r: cv.group_from_proto(r.group), self._t(timeout))

    def group_stats(self, queue: str, group: str, timeout: Duration | None = None) -> Call[GroupStats]:
        req = qpb.GetConsumerGroupRequest(name=self.group_name(queue, group))
        return Call(QUEUES, "GetConsumerGroup", req, lambda r: cv.stats_from_proto(r.group.stats), self._t(timeout))

    def list_groups(self, queue: str, timeout: Duration | None = None) -> Call[list[ConsumerGroup]]:
        req = qpb.ListConsumerGroupsRequest(parent=self.queue_name(queue))
        return Call(QUEUES, "ListConsumerGroups", req, lambda r: [cv.group_from_proto(g) for g in r.groups], self._t(timeout))

    def delete_group(self, queue: str, group: str, timeout: Duration | None = None) -> Call[None]:
        req = qpb.DeleteConsumerGroupRequest(name=self.group_name(queue, group))
        return Call(QUEUES, "DeleteConsumerGroup", req, lambda r: None, self._t(timeout))

    def seek(
        self,
        queue: str,
        group: str,
        *,
        time: _dt.datetime | None = None,
        offsets: Mapping[int, int] | None = None,
        position: SeekPosition | None = None,
        timeout: Duration | None = None,
    ) -> Call[dict[int, int]]:
        if sum(x is not None for x in (time, offsets, position)) != 1:
            raise ValueError("seek takes exactly one of time, offsets and position")
        req = pb.SeekConsumerGroupRequest(group=self.group_name(queue, group))
        if time is not None:
            req.time.CopyFrom(cv.time_to_proto(time))
        elif offsets is not None:
            req.offsets.CopyFrom(
                pb.PartitionOffsets(offsets=[pb.PartitionOffset(partition=p, offset=o) for p, o in offsets.items()])
            )
        else:
            req.position = int(SeekPosition(position))
        return Call(
            CONSUMER,
            "SeekConsumerGroup",
            req,
            lambda r: {p.partition: p.offset for p in r.positions},
            self._t(timeout),
        )

    # --- sending ---------------------------------------------------------------

    def send(
        self,
        queue: str,
        messages: Iterable[Message | bytes | str] | Message | bytes | str,
        timeout: Duration | None = None,
        idempotence_key: str = "",
    ) -> Call[list[SendResult]]:
        if isinstance(messages, (Message, bytes, str)):
            messages = [messages]
        req = pb.SendMessagesRequest(
            queue=self.queue_name(queue),
            messages=[cv.message_to_proto(cv.as_message(m)) for m in messages],
            idempotence_key=idempotence_key,
        )
        return Call(PRODUCER, "SendMessages", req, cv.send_results, self._t(timeout))

    def cancel_scheduled(
        self, queue: str, schedule_ids: Iterable[str], timeout: Duration | None = None
    ) -> list[Call[list[CancelResult]]]:
        """One call per MAX_ACKS schedule ids, the most one call takes."""
        ids = [schedule_ids] if isinstance(schedule_ids, str) else list(schedule_ids)
        name = self.queue_name(queue)
        return [
            Call(
                PRODUCER,
                "CancelScheduledMessages",
                pb.CancelScheduledMessagesRequest(queue=name, schedule_ids=ids[i : i + MAX_ACKS]),
                cv.cancel_results,
                self._t(timeout),
            )
            for i in range(0, len(ids), MAX_ACKS)
        ]

    def reschedule(
        self,
        queue: str,
        schedule_id: str,
        *,
        delay: Duration | None = None,
        deliver_time: _dt.datetime | None = None,
        timeout: Duration | None = None,
    ) -> Call[RescheduleResult]:
        req = pb.RescheduleMessageRequest(queue=self.queue_name(queue), schedule_id=schedule_id)
        if deliver_time is not None:
            req.deliver_time.CopyFrom(cv.time_to_proto(deliver_time))
        if delay is not None or deliver_time is None:
            # Neither: released at once, as a delay of 0.
            req.delay.CopyFrom(cv.duration_to_proto(delay or 0))
        return Call(PRODUCER, "RescheduleMessage", req, cv.reschedule_result, self._t(timeout))

    # --- receiving -------------------------------------------------------------

    def receive(
        self,
        queue: str,
        group: str,
        *,
        max_messages: int = 0,
        wait_time: Duration = 0,
        visibility_timeout: Duration | None = None,
        consumer_id: str = "",
        tag_filter: TagFilter | None = None,
        broadcast: BroadcastOptions | None = None,
        timeout: Duration | None = None,
        dead_letters: bool = False,
    ) -> Call[list[ReceivedMessage]]:
        wait = cv.seconds(wait_time) or 0.0
        fields: dict[str, Any] = {"group": self.group_name(queue, group), "max_messages": max_messages}
        if wait:
            fields["wait_time"] = cv.duration_to_proto(wait)
        visibility = DEFAULT_VISIBILITY_TIMEOUT
        if visibility_timeout is not None:
            fields["visibility_timeout"] = cv.duration_to_proto(visibility_timeout)
            visibility = cv.seconds(visibility_timeout)
        if dead_letters:
            req, method = pb.ReceiveDeadLettersRequest(**fields), "ReceiveDeadLetters"
        else:
            req, method = pb.ReceiveMessagesRequest(**fields, consumer_id=consumer_id), "ReceiveMessages"
            if tag_filter is not None:
                req.tag_filter.CopyFrom(cv.tag_filter_to_proto(tag_filter))
            if broadcast is not None:
                req.broadcast.CopyFrom(cv.broadcast_to_proto(broadcast))
        # The server starts the visibility timeout once it has picked the
        # messages, after this moment: the estimate errs on the safe side.
        visible_at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=visibility)

        def parse(r) -> list[ReceivedMessage]:
            return [cv.received_from_proto(m, visible_at) for m in r.messages]

        default = None if self.default_timeout is None else wait + RECEIVE_GRACE
        return Call(CONSUMER, method, req, parse, _pick_timeout(timeout, default))

    def ack(
        self,
        queue: str,
        group: str,
        acks: Iterable[Ack | ReceivedMessage] | Ack | ReceivedMessage,
        *,
        stop_at_first_failure: bool = False,
        timeout: Duration | None = None,
        dead_letters: bool = False,
    ) -> list[Call[list[AckResult]]]:
        """The calls that settle acks, MAX_ACKS at a time."""
        if isinstance(acks, (Ack, ReceivedMessage)):
            acks = [acks]
        all_acks = [cv.as_ack(a) for a in acks]
        if dead_letters and any(a.status == AckStatus.REDELIVER for a in all_acks):
            raise ValueError("dead letters cannot be acked with REDELIVER")
        name = self.group_name(queue, group)
        cls, method = (pb.AckDeadLettersRequest, "AckDeadLetters") if dead_letters else (pb.AckMessagesRequest, "AckMessages")
        calls = []
        for i in range(0, len(all_acks), MAX_ACKS):
            req = cls(group=name, acks=cv.acks_to_proto(all_acks[i : i + MAX_ACKS]), stop_at_first_failure=stop_at_first_failure)
            calls.append(
                Call(CONSUMER, method, req, lambda r: [cv.ack_result_from_proto(x) for x in r.results], self._t(timeout))
            )
        return calls

    def change_visibility(
        self,
        queue: str,
        group: str,
        handles: Iterable[str | ReceivedMessage | Ack] | str | ReceivedMessage | Ack,
        visibility_timeout: Duration,
        *,
        timeout: Duration | None = None,
    ) -> list[Call[list[AckResult]]]:
        """The calls that give in-flight deliveries a new visibility timeout
        (counted from when the server applies it), MAX_ACKS handles at a time."""
        if isinstance(handles, (str, ReceivedMessage, Ack)):
            handles = [handles]
        all_handles = [cv.receipt_handle_of(h) for h in handles]
        if visibility_timeout is None:
            raise ValueError("a visibility timeout (15 to 300 s) is required")
        visibility = cv.duration_to_proto(visibility_timeout)
        name = self.group_name(queue, group)
        calls = []
        for i in range(0, len(all_handles), MAX_ACKS):
            req = pb.ChangeVisibilityRequest(
                group=name, receipt_handles=all_handles[i : i + MAX_ACKS], visibility_timeout=visibility
            )
            calls.append(
                Call(
                    CONSUMER,
                    "ChangeVisibility",
                    req,
                    lambda r: [cv.ack_result_from_proto(x) for x in r.results],
                    self._t(timeout),
                )
            )
        return calls

    def redrive_dead_letters(
        self,
        queue: str,
        group: str,
        *,
        message_ids: Iterable[str] = (),
        tag_filter: TagFilter | None = None,
        max_per_second: int = 0,
        limit: int = 0,
        timeout: Duration | None = None,
    ) -> Call[list[RedriveResult]]:
        if isinstance(message_ids, str):
            message_ids = [message_ids]
        req = pb.RedriveDeadLettersRequest(
            group=self.group_name(queue, group),
            message_ids=list(message_ids),
            max_per_second=max_per_second,
            limit=limit,
        )
        if tag_filter is not None:
            req.tag_filter.CopyFrom(cv.tag_filter_to_proto(tag_filter))
        return Call(
            CONSUMER,
            "RedriveDeadLetters",
            req,
            lambda r: [cv.redrive_result_from_proto(x) for x in r.results],
            self._t(timeout),
        )

    # --- streaming -------------------------------------------------------------

    def subscribe_start(
        self,
        queue: str,
        group: str,
        *,
        credits: int,
        visibility_timeout: Duration | None = None,
        tag_filter: TagFilter | None = None,
        consumer_id: str = "",
    ) -> pb.SubscribeRequest:
        start = pb.SubscribeStart(group=self.group_name(queue, group), credits=credits, consumer_id=consumer_id)
        if visibility_timeout is not None:
            start.visibility_timeout.CopyFrom(cv.duration_to_proto(visibility_timeout))
        if tag_filter is not None:
            start.tag_filter.CopyFrom(cv.tag_filter_to_proto(tag_filter))
        return pb.SubscribeRequest(start=start)

