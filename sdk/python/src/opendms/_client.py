"""The synchronous client."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from opendms import _calls
from opendms._auth import TokenInterceptor
from opendms._batching import ProducerOptions
from opendms._calls import Call, Calls
from opendms._consumer import Consumer, ConsumerOptions
from opendms._convert import seconds
from opendms._gen.dms.v1 import message_pb2_grpc, queue_pb2_grpc
from opendms._producer import Producer
from opendms._retry import RetryPolicy
from opendms._subscription import Subscription
from opendms.errors import from_rpc_error
from opendms.types import (
    Ack,
    AckResult,
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

#: The largest gRPC message sent or received unless options say otherwise:
#: the server's own limit, room for a full batch (8 MiB) plus framing.
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20

#: The timeout of a call that names none (receives: their wait time plus 30 s).
DEFAULT_TIMEOUT = 30.0


def channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The channel options of a client: the message size limits, then the
    caller's, which win where both set the same thing."""
    return [
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_SIZE),
        *options,
    ]


class Client:
    """A connection to a DMS server, scoped to one project.

    ``target`` is a gRPC target such as ``"localhost:9090"``. The connection
    is insecure unless ``credentials`` (``grpc.ssl_channel_credentials()``,
    ...) are given; ``options`` are extra gRPC channel options. The channel
    connects in the background: a call made while the server cannot be
    reached fails with :class:`opendms.UnavailableError`. Every call takes an
    optional ``timeout`` in seconds; without one, ``timeout`` of the client
    applies (30 s; receives get their wait time on top). ``token`` is sent
    as ``authorization: Bearer <token>`` on every call, for a server with
    authentication on: a token from its Keystone endpoint (``POST
    /v3/auth/tokens``, header ``X-Subject-Token``) or an API token.

    Wherever a method takes a queue or a consumer group, it may be named by
    its display name or by its id. The client is safe to share between
    threads; close it (or use it as a context manager) when done.
    :meth:`with_project` returns a client of another project on the same
    connection.
    """

    def __init__(
        self,
        target: str | None = None,
        project: str = "",
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
        token: str | None = None,
    ) -> None:
        if channel is None:
            if not target:
                raise ValueError("a target (host:port) or a channel is required")
            opts = channel_options(options)
            if credentials is None:
                channel = grpc.insecure_channel(target, options=opts)
            else:
                channel = grpc.secure_channel(target, credentials, options=opts)
            if token:
                channel = grpc.intercept_channel(channel, TokenInterceptor(token))
            self._owns_channel = True
        else:
            self._owns_channel = False
        self._channel = channel
        self._calls = Calls(project, timeout)
        self._stubs = {
            _calls.QUEUES: queue_pb2_grpc.QueueServiceStub(channel),
            _calls.PRODUCER: message_pb2_grpc.ProducerServiceStub(channel),
            _calls.CONSUMER: message_pb2_grpc.ConsumerServiceStub(channel),
        }

    @property
    def project(self) -> str:
        return self._calls.project

    def with_project(self, project: str) -> "Client":
        """A client of another project that shares this client's connection
        (closing it leaves the connection open)."""
        return Client(project=project, timeout=self._calls.default_timeout, channel=self._channel)

    def close(self) -> None:
        """Closes the connection. Close producers and stop consumers first."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- invoking --------------------------------------------------------------

    def _method(self, call: Call) -> Any:
        return getattr(self._stubs[call.service], call.method)

    def _invoke(self, call: Call[T]) -> T:
        try:
            resp = self._method(call)(call.request, timeout=call.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return call.parse(resp)

    def _start(self, call: Call) -> grpc.Future:
        """Starts a call and returns its gRPC future, which can be cancelled;
        :meth:`_finish` gives the result."""
        return self._method(call).future(call.request, timeout=call.timeout)

    @staticmethod
    def _finish(call: Call[T], future: grpc.Future) -> T:
        try:
            resp = future.result()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return call.parse(resp)

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
    ) -> Queue:
        """Creates a queue named ``name`` (1 to 64 characters of
        ``[A-Za-z0-9_-]``, unique in the project). Zero arguments take the
        server's defaults: mode NORMAL with 3 partitions (FIFO always has 1),
        retention 72 h. ``dead_letters`` moves messages that failed
        ``max_consume_count`` (1 to 100) times to their group's dead letters."""
        return self._invoke(
            self._calls.create_queue(
                name,
                description=description,
                mode=mode,
                partitions=partitions,
                retention=retention,
                dead_letters=dead_letters,
                max_consume_count=max_consume_count,
                timeout=timeout,
            )
        )

    def get_queue(self, queue: str, *, timeout: Duration | None = None) -> Queue:
        """Returns a queue with its current counts."""
        return self._invoke(self._calls.get_queue(queue, timeout))

    def list_queues(self, *, page_size: int = 100, timeout: Duration | None = None) -> Iterator[Queue]:
        """Iterates over the queues of the project, oldest first, fetching
        them page by page as the iteration goes."""
        token = ""
        while True:
            page = self.list_queues_page(page_size=page_size, page_token=token, timeout=timeout)
            yield from page.queues
            token = page.next_page_token
            if not token:
                return

    def list_queues_page(self, *, page_size: int = 0, page_token: str = "", timeout: Duration | None = None) -> QueuePage:
        """Returns one page of queues (all of them when page_size is 0);
        pass its next_page_token to get the next."""
        return self._invoke(self._calls.list_queues_page(page_size, page_token, timeout))

    def delete_queue(self, queue: str, *, timeout: Duration | None = None) -> None:
        """Deletes a queue with its consumer groups and messages, for good."""
        self._invoke(self._calls.delete_queue(queue, timeout))

    def create_group(self, queue: str, name: str, *, timeout: Duration | None = None) -> ConsumerGroup:
        """Creates a consumer group on a queue; it starts at the earliest
        retained message."""
        return self._invoke(self._calls.create_group(queue, name, timeout))

    def get_group(self, queue: str, group: str, *, timeout: Duration | None = None) -> ConsumerGroup:
        """Returns a consumer group with its stats."""
        return self._invoke(self._calls.get_group(queue, group, timeout))

    def group_stats(self, queue: str, group: str, *, timeout: Duration | None = None) -> GroupStats:
        """Returns the consumption counts of a consumer group."""
        return self._invoke(self._calls.group_stats(queue, group, timeout))

    def list_groups(self, queue: str, *, timeout: Duration | None = None) -> list[ConsumerGroup]:
        """Returns the consumer groups of a queue with their stats, oldest
        first (a queue has few groups: they come in one call)."""
        return self._invoke(self._calls.list_groups(queue, timeout))

    def delete_group(self, queue: str, group: str, *, timeout: Duration | None = None) -> None:
        """Deletes a consumer group and its consumption state."""
        self._invoke(self._calls.delete_group(queue, group, timeout))

    def seek(
        self,
        queue: str,
        group: str,
        *,
        time: _dt.datetime | None = None,
        offsets: Mapping[int, int] | None = None,
        position: SeekPosition | None = None,
        timeout: Duration | None = None,
    ) -> dict[int, int]:
        """Moves a consumer group's position, given exactly one of: ``time``
        (the first message stored at or after it, timezone-aware),
        ``offsets`` ({partition: offset}; partitions not named keep theirs) or
        ``position`` (SeekPosition.EARLIEST or LATEST). Messages from the new
        position on are delivered again even if they were acked. Returns the
        new position of every partition."""
        return self._invoke(self._calls.seek(queue, group, time=time, offsets=offsets, position=position, timeout=timeout))

    # --- sending ---------------------------------------------------------------

    def send(
        self,
        queue: str,
        messages: Iterable[Message | bytes | str] | Message | bytes | str,
        *,
        idempotence_key: str = "",
        timeout: Duration | None = None,
    ) -> list[SendResult]:
        """Stores messages in a queue with one SendMessages call and returns
        one result per message, in order. All or nothing: if any message is
        invalid nothing is stored. One call carries at most 1000 messages and
        8 MiB; :meth:`producer` splits, coalesces and retries for you.

        No retry here: after UNAVAILABLE or DEADLINE_EXCEEDED the messages may
        or may not be stored. Sending them again stores them twice unless
        both calls carry the same ``idempotence_key`` (at most 128 bytes,
        unique per batch, for example a producer id and a sequence number):
        then the retry stores nothing and returns the first attempt's
        results, as long as that attempt is among the last 100000 messages of
        its partition."""
        return self._invoke(self._calls.send(queue, messages, timeout, idempotence_key))

    def cancel_scheduled_messages(
        self, queue: str, schedule_ids: Iterable[str], *, timeout: Duration | None = None
    ) -> list[CancelResult]:
        """Cancels scheduled messages (sent with a delay or deliver
        time) before they become visible: one result per schedule id, in
        order; one that cannot be cancelled (SCHEDULE_NOT_FOUND,
        SCHEDULE_ALREADY_RELEASED, SCHEDULE_ID_INVALID) says why in its
        result rather than failing the others. More than 1000 ids take
        several calls."""
        out: list[CancelResult] = []
        for call in self._calls.cancel_scheduled(queue, schedule_ids, timeout):
            out.extend(self._invoke(call))
        return out

    def reschedule_message(
        self,
        queue: str,
        schedule_id: str,
        *,
        delay: Duration | None = None,
        deliver_time: _dt.datetime | None = None,
        timeout: Duration | None = None,
    ) -> RescheduleResult:
        """Moves a scheduled message to a new time: after ``delay``
        from now, or at ``deliver_time`` (timezone-aware, at most 7 days
        ahead; a past time releases it at once); neither releases it now.
        Returns its new schedule id (the old one is no longer valid)."""
        return self._invoke(self._calls.reschedule(queue, schedule_id, delay=delay, deliver_time=deliver_time, timeout=timeout))

    def producer(
        self,
        queue: str,
        *,
        linger: Duration = 0.005,
        max_batch_messages: int = 1000,
        max_batch_bytes: int = 8 << 20,
        max_in_flight: int = 4,
        max_buffered_bytes: int = 64 << 20,
        send_timeout: Duration = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        idempotent: bool = True,
    ) -> Producer:
        """Returns a batching :class:`Producer` for a queue. See there."""
        opts = ProducerOptions(
            linger=seconds(linger),
            max_batch_messages=max_batch_messages,
            max_batch_bytes=max_batch_bytes,
            max_in_flight=max_in_flight,
            max_buffered_bytes=max_buffered_bytes,
            send_timeout=seconds(send_timeout),
            retry=retry,
            idempotent=idempotent,
        )
        return Producer(self, queue, opts)

    # --- receiving -------------------------------------------------------------

    def receive(
        self,
        queue: str,
        group: str,
        *,
        max_messages: int = 10,
        wait_time: Duration = 0,
        visibility_timeout: Duration | None = None,
        consumer_id: str = "",
        tag_filter: TagFilter | None = None,
        broadcast: BroadcastOptions | None = None,
        timeout: Duration | None = None,
    ) -> list[ReceivedMessage]:
        """Returns up to ``max_messages`` (1 to 1000) messages of a consumer
        group, waiting up to ``wait_time`` (0 to 60 s) for the first. Each must
        be acked before its visibility timeout (15 to 300 s, default 30 s)
        passes, or the group gets it again; :meth:`change_visibility` extends
        it. An empty list means none became available in time.

        ``tag_filter`` receives only matching messages (a group keeps one
        filter; a different one fails with TAG_FILTER_CONFLICT).
        ``broadcast`` makes this consumer (``consumer_id``, required) receive
        every message by itself."""
        return self._invoke(
            self._calls.receive(
                queue,
                group,
                max_messages=max_messages,
                wait_time=wait_time,
                visibility_timeout=visibility_timeout,
                consumer_id=consumer_id,
                tag_filter=tag_filter,
                broadcast=broadcast,
                timeout=timeout,
            )
        )

    def ack(
        self,
        queue: str,
        group: str,
        acks: Iterable[Ack | ReceivedMessage] | Ack | ReceivedMessage,
        *,
        stop_at_first_failure: bool = False,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """Settles deliveries and returns one result per ack, in order. An
        ack is an :class:`Ack` (``msg.success()``, ``msg.fail()``,
        ``msg.redeliver()``) or a ReceivedMessage (success). An ack that could
        not be applied (its handle expired, ...) is reported in its result
        with a reason, not raised. More than 1000 acks take several calls."""
        out: list[AckResult] = []
        for call in self._calls.ack(queue, group, acks, stop_at_first_failure=stop_at_first_failure, timeout=timeout):
            out += self._invoke(call)
        return out

    def change_visibility(
        self,
        queue: str,
        group: str,
        handles_or_messages: Iterable[str | ReceivedMessage | Ack] | str | ReceivedMessage | Ack,
        visibility_timeout: Duration,
        *,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """Gives in-flight deliveries a new visibility timeout, counted from
        now (15 to 300 s; seconds or a timedelta): a consumer whose work takes
        longer than it expected postpones the moment the group gets the
        message again. Deliveries are named by receipt handle or by the
        ReceivedMessage (or an Ack of it); their handles stay valid, and a
        shorter timeout brings the moment forward. Returns one result per
        handle, in order; a handle that is no longer in flight (settled,
        timed out, delivered again) is reported with reason
        RECEIPT_HANDLE_EXPIRED, a malformed one RECEIPT_HANDLE_INVALID, not
        raised. The ``visible_at`` of a ReceivedMessage is not updated. More
        than 1000 handles take several calls; none take none. Messages only:
        dead letters cannot be extended.

        The consumer loop (:meth:`consumer`) does this by itself for
        handlers that run long."""
        out: list[AckResult] = []
        for call in self._calls.change_visibility(queue, group, handles_or_messages, visibility_timeout, timeout=timeout):
            out += self._invoke(call)
        return out

    def consumer(
        self,
        queue: str,
        group: str,
        handler: Callable[[ReceivedMessage], Any],
        *,
        concurrency: int = 10,
        max_messages: int = 1000,
        wait_time: Duration = 20.0,
        visibility_timeout: Duration | None = None,
        consumer_id: str = "",
        tag_filter: TagFilter | None = None,
        extend_visibility: bool = True,
        extension_period: Duration | None = None,
    ) -> Consumer:
        """Returns a :class:`Consumer` that calls ``handler`` for each message
        of the group, ``concurrency`` at a time. See there.

        While a handler runs, the consumer extends the visibility of its
        message every ``extension_period`` (seconds or a timedelta; default
        two thirds of ``visibility_timeout``, which is 15 to 300 s, default
        30 s) by ``visibility_timeout``, until the handler finishes, so a slow
        handler does not see its message delivered again to someone else.
        ``extend_visibility=False`` turns this off. ``extension_period`` must
        be shorter than the visibility timeout (ValueError)."""
        opts = ConsumerOptions(
            concurrency=concurrency,
            max_messages=max_messages,
            wait_time=seconds(wait_time),
            visibility_timeout=visibility_timeout,
            consumer_id=consumer_id,
            tag_filter=tag_filter,
            extend_visibility=extend_visibility,
            extension_period=seconds(extension_period),
        )
        return Consumer(self, queue, group, handler, opts)

    def subscribe(
        self,
        queue: str,
        group: str,
        *,
        credits: int = 100,
        visibility_timeout: Duration | None = None,
        tag_filter: TagFilter | None = None,
        consumer_id: str = "",
        ack_batch_size: int = 100,
        ack_interval: Duration = 0.01,
    ) -> Subscription:
        """Opens a streaming :class:`Subscription` (the Subscribe RPC): at
        most ``credits`` messages are delivered and not yet acked at once;
        each ack grants one more. See there."""
        start = self._calls.subscribe_start(
            queue, group, credits=credits, visibility_timeout=visibility_timeout, tag_filter=tag_filter, consumer_id=consumer_id
        )
        return Subscription(self._stubs[_calls.CONSUMER], start, visibility_timeout, ack_batch_size, seconds(ack_interval))

    # --- dead letters ----------------------------------------------------------

    def receive_dead_letters(
        self,
        queue: str,
        group: str,
        *,
        max_messages: int = 10,
        wait_time: Duration = 0,
        visibility_timeout: Duration | None = None,
        timeout: Duration | None = None,
    ) -> list[ReceivedMessage]:
        """Returns dead letters of a consumer group (messages that failed
        max_consume_count times), each with its ``dead_letter`` info. They
        are received, hidden and acked like messages; an acked dead letter is
        gone. Fails with FAILED_PRECONDITION (DEAD_LETTERS_DISABLED) when the
        queue does not keep dead letters."""
        return self._invoke(
            self._calls.receive(
                queue,
                group,
                max_messages=max_messages,
                wait_time=wait_time,
                visibility_timeout=visibility_timeout,
                timeout=timeout,
                dead_letters=True,
            )
        )

    def ack_dead_letters(
        self,
        queue: str,
        group: str,
        acks: Iterable[Ack | ReceivedMessage] | Ack | ReceivedMessage,
        *,
        stop_at_first_failure: bool = False,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """Settles received dead letters (SUCCESS removes them, FAIL makes
        them available again; REDELIVER is refused), one result per ack."""
        out: list[AckResult] = []
        for call in self._calls.ack(
            queue, group, acks, stop_at_first_failure=stop_at_first_failure, timeout=timeout, dead_letters=True
        ):
            out += self._invoke(call)
        return out

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
    ) -> list[RedriveResult]:
        """Gives dead letters back to their group: each becomes available
        again with a fresh delivery count. Only those of ``message_ids`` when
        given (else all), only those matching ``tag_filter``, at most ``limit``
        (default 1000) at ``max_per_second`` (default 1000). One result per
        dead letter considered."""
        return self._invoke(
            self._calls.redrive_dead_letters(
                queue,
                group,
                message_ids=message_ids,
                tag_filter=tag_filter,
                max_per_second=max_per_second,
                limit=limit,
                timeout=timeout,
            )
        )
