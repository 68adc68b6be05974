"""The Python client of DMS, the distributed message service.

It wraps the gRPC API ``dms.v1`` (generated from the repository's protos at
build time into ``opendms._gen``) with plain Python types, a batching
producer, a handler-driven consumer and a streaming subscription, in a sync
flavour (:class:`Client`, threads and ``concurrent.futures``) and an asyncio
one (:class:`opendms.aio.Client`). Both share the request building,
validation and conversion code.

::

    import opendms

    with opendms.Client("localhost:9090", project="0123456789abcdef0123456789abcdef") as client:
        client.create_queue("orders")
        client.create_group("orders", "billing")
        with client.producer("orders") as producer:
            future = producer.send(opendms.Message(b"hello", attributes={"region": "eu"}))
        print(future.result().message_id)

Errors are :class:`DMSError` (subclasses per gRPC code, such as
:class:`NotFoundError`) carrying ``code``, ``reason`` (a :class:`Reason`,
from the ``google.rpc.ErrorInfo`` of domain ``dms.opendms.io``) and
``message``. Branch on reasons and codes, never on messages.

Delivery is at least once. The producer retries sends that failed with
UNAVAILABLE or DEADLINE_EXCEEDED with the batch's idempotence key, so a
retried batch is stored once, within the server's idempotence window (the
last 100000 messages of a partition); past it a retry can duplicate.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from opendms._client import Client
from opendms._consumer import Consumer
from opendms._producer import Producer
from opendms._retry import RetryPolicy
from opendms._subscription import Subscription
from opendms.errors import (
    ERROR_DOMAIN,
    AlreadyExistsError,
    CancelledError,
    ClosedError,
    DeadlineExceededError,
    DMSError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    Redeliver,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    is_retryable,
    reason_of,
)
from opendms.types import (
    MAX_ACKS,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_RECEIVE_MESSAGES,
    Ack,
    AckResult,
    AckStatus,
    BroadcastOptions,
    BroadcastStart,
    CancelResult,
    ConsumerGroup,
    DeadLetterInfo,
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
    TagMatch,
)

#: The API version this client speaks.
API_VERSION = "dms.v1"

try:
    __version__ = _version("opendms")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "API_VERSION",
    "ERROR_DOMAIN",
    "MAX_ACKS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_RECEIVE_MESSAGES",
    "Ack",
    "AckResult",
    "AckStatus",
    "AlreadyExistsError",
    "BroadcastOptions",
    "BroadcastStart",
    "CancelledError",
    "Client",
    "ClosedError",
    "Consumer",
    "ConsumerGroup",
    "DMSError",
    "DeadLetterInfo",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "GroupStats",
    "InternalError",
    "InvalidArgumentError",
    "Message",
    "NotFoundError",
    "PermissionDeniedError",
    "Producer",
    "Queue",
    "QueueMode",
    "QueuePage",
    "Reason",
    "ReceivedMessage",
    "Redeliver",
    "RedriveResult",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SeekPosition",
    "SendResult",
    "CancelResult",
    "RescheduleResult",
    "Subscription",
    "TagFilter",
    "TagMatch",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "is_retryable",
    "reason_of",
]
