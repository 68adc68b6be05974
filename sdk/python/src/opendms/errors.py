"""Errors of the DMS client: DMSError and its subclasses, and the stable reasons."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from opendms._gen.reasons import Reason  # noqa: F401 - part of this module's API

#: The google.rpc.ErrorInfo domain of every DMS error.
ERROR_DOMAIN = "dms.opendms.io"


class DMSError(Exception):
    """A failed call to DMS.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``).
        reason: the stable reason from the ``google.rpc.ErrorInfo`` detail of
            domain ``dms.opendms.io``; ``""`` when the server attached none
            (for example when it could not be reached). Compare it with
            :class:`Reason` members.
        message: what went wrong, for people.
        metadata: the ErrorInfo metadata, if the server sent any.

    Calls raise the subclass for their code (:class:`NotFoundError`,
    :class:`AlreadyExistsError`, ...) so that ``except`` clauses can pick
    them; every subclass is a ``DMSError``.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, reason)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        if self.reason:
            return f"{self.reason} ({self.code.name}): {self.message}"
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"

    @property
    def retryable(self) -> bool:
        """Whether repeating the call unchanged may succeed: the server was
        unreachable (UNAVAILABLE) or the call timed out (DEADLINE_EXCEEDED).
        Repeating a send that timed out can store its messages twice."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class InvalidArgumentError(DMSError):
    """The request is malformed or out of range (INVALID_ARGUMENT)."""


class NotFoundError(DMSError):
    """A queue, group or message does not exist (NOT_FOUND)."""


class AlreadyExistsError(DMSError):
    """A queue or group of that name exists already (ALREADY_EXISTS)."""


class FailedPreconditionError(DMSError):
    """The resource is not in a state that allows the call (FAILED_PRECONDITION),
    for example dead letters asked of a queue that does not keep them."""


class ResourceExhaustedError(DMSError):
    """A quota, a limit or the storage ran out (RESOURCE_EXHAUSTED)."""


class PermissionDeniedError(DMSError):
    """The caller may not do this (PERMISSION_DENIED)."""


class UnauthenticatedError(DMSError):
    """The caller is not authenticated (UNAUTHENTICATED)."""


class UnimplementedError(DMSError):
    """The server does not offer this (UNIMPLEMENTED)."""


class UnavailableError(DMSError):
    """The server or the role serving the call is not reachable (UNAVAILABLE);
    retrying may help."""


class DeadlineExceededError(DMSError):
    """The call timed out (DEADLINE_EXCEEDED); it may have taken effect."""


class CancelledError(DMSError):
    """The call was cancelled by the client (CANCELLED)."""


class InternalError(DMSError):
    """The server failed (INTERNAL or UNKNOWN); retrying may help."""


_BY_CODE: dict[grpc.StatusCode, type[DMSError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}


def error_for(
    code: grpc.StatusCode, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
) -> DMSError:
    """Returns the DMSError subclass instance for a code."""
    return _BY_CODE.get(code, DMSError)(code, message, reason, metadata)


def from_rpc_error(err: grpc.RpcError) -> DMSError:
    """Converts the error of a gRPC call (sync or asyncio) into a DMSError,
    reading the reason from the rich status details (grpc-status-details-bin)."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    message = err.details() if callable(getattr(err, "details", None)) else str(err)
    reason, metadata = "", {}
    try:
        status = rpc_status.from_call(err)
    except (ValueError, AttributeError, TypeError):
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    reason, metadata = info.reason, dict(info.metadata)
                    break
    return error_for(code or grpc.StatusCode.UNKNOWN, message or "", reason, metadata)


def reason_of(err: BaseException | None) -> str:
    """The stable reason of err, or ``""`` when it is not a DMSError or has none."""
    return err.reason if isinstance(err, DMSError) else ""


def is_retryable(err: BaseException | None) -> bool:
    """Whether a call that failed with err may succeed when repeated unchanged."""
    return isinstance(err, DMSError) and err.retryable


class Redeliver(Exception):
    """Raised by a consumer's handler to settle the message with
    :attr:`AckStatus.REDELIVER`: it is not processed and should be tried
    again later, no sooner than the queue's retry delay (30 s). The attempt
    counts as failed. Any other exception settles it with FAIL (available
    again at once)."""


class ClosedError(RuntimeError):
    """A message was given to a producer, or an ack to a subscription, that
    is closed."""
