"""Per-call credentials: a bearer token on every call of a channel, for a
dmsd with authentication on (``dmsd -auth.enabled``)."""

from __future__ import annotations

import collections

import grpc
import grpc.aio


def _with_token(metadata, token_pair):
    return tuple(metadata or ()) + (token_pair,)


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", "Bearer " + token)

    def _details(self, d):
        return _CallDetails(
            d.method,
            d.timeout,
            _with_token(d.metadata, self._pair),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def _aio_details(d, pair):
    return grpc.aio.ClientCallDetails(d.method, d.timeout, _with_token(d.metadata, pair), d.credentials, d.wait_for_ready)


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, pair):
        self._pair = pair

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_aio_details(details, self._pair), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, pair):
        self._pair = pair

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_aio_details(details, self._pair), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, pair):
        self._pair = pair

    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(_aio_details(details, self._pair), request_iterator)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, pair):
        self._pair = pair

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(_aio_details(details, self._pair), request_iterator)


def aio_token_interceptors(token: str) -> list:
    """The grpc.aio interceptors that add the token to every call."""
    pair = ("authorization", "Bearer " + token)
    return [_AioUnaryUnary(pair), _AioUnaryStream(pair), _AioStreamUnary(pair), _AioStreamStream(pair)]
