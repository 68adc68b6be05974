"""The asyncio client."""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, Union

import grpc
import grpc.aio

from opendms import _calls
from opendms._auth import aio_token_interceptors
from opendms._batching import ProducerOptions
from opendms._calls import Call, Calls
from opendms._client import DEFAULT_TIMEOUT, channel_options
from opendms._consumer import ConsumerOptions
from opendms._convert import seconds
from opendms._gen.dms.v1 import message_pb2_grpc, queue_pb2_grpc
from opendms._retry import RetryPolicy
from opendms.aio._consumer import Consumer
from opendms.aio._producer import Producer
from opendms.aio._subscription import Subscription
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

#: A handler of the asyncio consumer: a coroutine function (or a plain one).
AsyncHandler = Callable[[ReceivedMessage], Union[Awaitable[Any], Any]]


class Client:
    """The asyncio variant of :class:`opendms.Client`: the same methods, as
    coroutines, on a ``grpc.aio`` channel. Create it inside a running event
    loop; close it with ``await client.close()`` or ``async with``.
    :meth:`producer`, :meth:`consumer` and :meth:`subscribe` return the
    asyncio producer, consumer and subscription."""

    def __init__(
        self,
        target: str | None = None,
        project: str = "",
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
    ) -> None:
        if channel is None:
            if not target:
                raise ValueError("a target (host:port) or a channel is required")
            opts = channel_options(options)
            interceptors = aio_token_interceptors(token) if token else None
            if credentials is None:
                channel = grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
            else:
                channel = grpc.aio.secure_channel(target, credentials, options=opts, interceptors=interceptors)
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
        """A client of another project sharing this client's connection."""
        return Client(project=project, timeout=self._calls.default_timeout, channel=self._channel)

    async def close(self) -> None:
        """Closes the connection. Close producers and stop consumers first."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _invoke(self, call: Call[T]) -> T:
        try:
            resp = await getattr(self._stubs[call.service], call.method)(call.request, timeout=call.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return call.parse(resp)

    # --- queues and groups -----------------------------------------------------

    async def create_queue(
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
        """See :meth:`opendms.Client.create_queue`."""
        return await self._invoke(
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

    async def get_queue(self, queue: str, *, timeout: Duration | None = None) -> Queue:
        """See :meth:`opendms.Client.get_queue`."""
        return await self._invoke(self._calls.get_queue(queue, timeout))

    async def list_queues(self, *, page_size: int = 100, timeout: Duration | None = None) -> AsyncIterator[Queue]:
        """Iterates (``async for``) over the queues of the project, oldest
        first, page by page."""
        token = ""
        while True:
            page = await self.list_queues_page(page_size=page_size, page_token=token, timeout=timeout)
            for q in page.queues:
                yield q
            token = page.next_page_token
            if not token:
                return

    async def list_queues_page(self, *, page_size: int = 0, page_token: str = "", timeout: Duration | None = None) -> QueuePage:
        """See :meth:`opendms.Client.list_queues_page`."""
        return await self._invoke(self._calls.list_queues_page(page_size, page_token, timeout))

    async def delete_queue(self, queue: str, *, timeout: Duration | None = None) -> None:
        """See :meth:`opendms.Client.delete_queue`."""
        await self._invoke(self._calls.delete_queue(queue, timeout))

    async def create_group(self, queue: str, name: str, *, timeout: Duration | None = None) -> ConsumerGroup:
        """See :meth:`opendms.Client.create_group`."""
        return await self._invoke(self._calls.create_group(queue, name, timeout))

    async def get_group(self, queue: str, group: str, *, timeout: Duration | None = None) -> ConsumerGroup:
        """See :meth:`opendms.Client.get_group`."""
        return await self._invoke(self._calls.get_group(queue, group, timeout))

    async def group_stats(self, queue: str, group: str, *, timeout: Duration | None = None) -> GroupStats:
        """See :meth:`opendms.Client.group_stats`."""
        return await self._invoke(self._calls.group_stats(queue, group, timeout))

    async def list_groups(self, queue: str, *, timeout: Duration | None = None) -> list[ConsumerGroup]:
        """See :meth:`opendms.Client.list_groups`."""
        return await self._invoke(self._calls.list_groups(queue, timeout))

    async def delete_group(self, queue: str, group: str, *, timeout: Duration | None = None) -> None:
        """See :meth:`opendms.Client.delete_group`."""
        await self._invoke(self._calls.delete_group(queue, group, timeout))

    async def seek(
        self,
        queue: str,
        group: str,
        *,
        time: _dt.datetime | None = None,
        offsets: Mapping[int, int] | None = None,
        position: SeekPosition | None = None,
        timeout: Duration | None = None,
    ) -> dict[int, int]:
        """See :meth:`opendms.Client.seek`."""
        return await self._invoke(self._calls.seek(queue, group, time=time, offsets=offsets, position=position, timeout=timeout))

    # --- sending ---------------------------------------------------------------

    async def send(
        self,
        queue: str,
        messages: Iterable[Message | bytes | str] | Message | bytes | str,
        *,
        idempotence_key: str = "",
        timeout: Duration | None = None,
    ) -> list[SendResult]:
        """See :meth:`opendms.Client.send` (no retry; the idempotence key
        makes a retry of the same batch safe)."""
        return await self._invoke(self._calls.send(queue, messages, timeout, idempotence_key))

    async def cancel_scheduled_messages(
        self, queue: str, schedule_ids: Iterable[str], *, timeout: Duration | None = None
    ) -> list[CancelResult]:
        """See :meth:`opendms.Client.cancel_scheduled_messages`."""
        out: list[CancelResult] = []
        for call in self._calls.cancel_scheduled(queue, schedule_ids, timeout):
            out.extend(await self._invoke(call))
        return out

    async def reschedule_message(
        self,
        queue: str,
        schedule_id: str,
        *,
        delay: Duration | None = None,
        deliver_time: _dt.datetime | None = None,
        timeout: Duration | None = None,
    ) -> RescheduleResult:
        """See :meth:`opendms.Client.reschedule_message`."""
        return await self._invoke(self._calls.reschedule(queue, schedule_id, delay=delay, deliver_time=deliver_time, timeout=timeout))

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
        """Returns an asyncio batching :class:`opendms.aio.Producer`."""
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

    async def receive(
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
        """See :meth:`opendms.Client.receive`."""
        return await self._invoke(
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

    async def ack(
        self,
        queue: str,
        group: str,
        acks: Iterable[Ack | ReceivedMessage] | Ack | ReceivedMessage,
        *,
        stop_at_first_failure: bool = False,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """See :meth:`opendms.Client.ack`."""
        out: list[AckResult] = []
        for call in self._calls.ack(queue, group, acks, stop_at_first_failure=stop_at_first_failure, timeout=timeout):
            out += await self._invoke(call)
        return out

    async def change_visibility(
        self,
        queue: str,
        group: str,
        handles_or_messages: Iterable[str | ReceivedMessage | Ack] | str | ReceivedMessage | Ack,
        visibility_timeout: Duration,
        *,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """See :meth:`opendms.Client.change_visibility`: a new visibility
        timeout (15 to 300 s, from now) for in-flight deliveries, one result
        per handle."""
        out: list[AckResult] = []
        for call in self._calls.change_visibility(queue, group, handles_or_messages, visibility_timeout, timeout=timeout):
            out += await self._invoke(call)
        return out

    def consumer(
        self,
        queue: str,
        group: str,
        handler: AsyncHandler,
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
        """Returns an asyncio :class:`opendms.aio.Consumer` calling ``handler``
        (a coroutine function) for each message, ``concurrency`` at a time.
        It extends the visibility of messages whose handlers run long, as
        :meth:`opendms.Client.consumer` describes (``extend_visibility``,
        ``extension_period``)."""
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
        """Returns an asyncio :class:`opendms.aio.Subscription` (the Subscribe
        RPC with credits); use it with ``async with`` and ``async for``."""
        start = self._calls.subscribe_start(
            queue, group, credits=credits, visibility_timeout=visibility_timeout, tag_filter=tag_filter, consumer_id=consumer_id
        )
        return Subscription(self._stubs[_calls.CONSUMER], start, visibility_timeout, ack_batch_size, seconds(ack_interval))

    # --- dead letters ----------------------------------------------------------

    async def receive_dead_letters(
        self,
        queue: str,
        group: str,
        *,
        max_messages: int = 10,
        wait_time: Duration = 0,
        visibility_timeout: Duration | None = None,
        timeout: Duration | None = None,
    ) -> list[ReceivedMessage]:
        """See :meth:`opendms.Client.receive_dead_letters`."""
        return await self._invoke(
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

    async def ack_dead_letters(
        self,
        queue: str,
        group: str,
        acks: Iterable[Ack | ReceivedMessage] | Ack | ReceivedMessage,
        *,
        stop_at_first_failure: bool = False,
        timeout: Duration | None = None,
    ) -> list[AckResult]:
        """See :meth:`opendms.Client.ack_dead_letters`."""
        out: list[AckResult] = []
        for call in self._calls.ack(
            queue, group, acks, stop_at_first_failure=stop_at_first_failure, timeout=timeout, dead_letters=True
        ):
            out += await self._invoke(call)
        return out

    async def redrive_dead_letters(
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
        """See :meth:`opendms.Client.redrive_dead_letters`."""
        return await self._invoke(
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
