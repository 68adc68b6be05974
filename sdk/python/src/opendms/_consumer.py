"""The synchronous consumer loop."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import queue as _queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from opendms._calls import DEFAULT_VISIBILITY_TIMEOUT, Call
from opendms._convert import seconds
from opendms._retry import RetryPolicy, ack_status_for, recoverable
from opendms.errors import DMSError, Redeliver
from opendms.types import MAX_ACKS, MAX_RECEIVE_MESSAGES, Ack, AckResult, AckStatus, Duration, ReceivedMessage, TagFilter

log = logging.getLogger("opendms")

#: The least time between two receives of a consumer that came back empty.
IDLE_PAUSE = 0.2
#: How a consumer retries receives that failed recoverably.
RECEIVE_RETRY = RetryPolicy(initial_backoff=0.1, max_backoff=5.0)
#: How a consumer retries an ack call.
ACK_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0)
#: The timeout of one ack call of a consumer.
ACK_TIMEOUT = 10.0
#: The share of the visibility timeout after which a consumer extends the
#: visibility of a message whose handler still runs (by default).
EXTENSION_SHARE = 2 / 3
#: How long a consumer waits before it tries again an extension call that
#: failed recoverably (less when the delivery would expire before).
EXTENSION_RETRY = 1.0


@dataclass(frozen=True)
class ConsumerOptions:
    """The settings of a consumer loop; see :meth:`opendms.Client.consumer`."""

    concurrency: int = 10
    max_messages: int = MAX_RECEIVE_MESSAGES
    wait_time: float = 20.0
    visibility_timeout: Duration | None = None
    consumer_id: str = ""
    tag_filter: TagFilter | None = None
    #: Whether the visibility of a message whose handler still runs is
    #: extended (ChangeVisibility) every extension_period.
    extend_visibility: bool = True
    #: Seconds between extensions; None: two thirds of the visibility timeout.
    extension_period: float | None = None

    @property
    def visibility_seconds(self) -> float:
        """The visibility timeout in seconds (the server's default if none)."""
        v = seconds(self.visibility_timeout)
        return DEFAULT_VISIBILITY_TIMEOUT if v is None else v

    def normalized(self) -> "ConsumerOptions":
        period = None
        if self.extend_visibility:
            visibility = self.visibility_seconds
            period = seconds(self.extension_period)
            if period is None:
                period = visibility * EXTENSION_SHARE
            elif not 0 < period < visibility:
                raise ValueError(
                    f"extension_period must be more than 0 and less than the visibility timeout ({visibility:g} s), got {period:g}"
                )
        return ConsumerOptions(
            concurrency=max(self.concurrency, 1),
            max_messages=min(max(self.max_messages, 1), MAX_RECEIVE_MESSAGES),
            wait_time=min(max(self.wait_time, 0.0), 60.0),
            visibility_timeout=self.visibility_timeout,
            consumer_id=self.consumer_id,
            tag_filter=self.tag_filter,
            extend_visibility=self.extend_visibility,
            extension_period=period,
        )


def handle_outcome(handler: Callable[[ReceivedMessage], Any], m: ReceivedMessage) -> Ack:
    """Runs a handler and returns the ack its outcome calls for."""
    try:
        handler(m)
    except BaseException as e:  # noqa: BLE001 - any failure of the handler settles the message
        log_failure(m, e)
        return Ack(m.receipt_handle, ack_status_for(e))
    return Ack(m.receipt_handle, AckStatus.SUCCESS)


def log_failure(m: ReceivedMessage, e: BaseException) -> None:
    if isinstance(e, Redeliver):
        log.debug("opendms: handler asked to redeliver message %s", m.id)
    else:
        log.warning("opendms: handler failed for message %s: %r", m.id, e, exc_info=e)


@dataclass(eq=False)
class Lease:
    """One delivery whose handler runs, as the extension schedule sees it.
    Times are ``time.monotonic()``."""

    handle: str
    message_id: str
    #: When to extend the visibility next.
    due: float
    #: When the delivery expires unless extended (estimated early: from the
    #: start of the call that set it).
    deadline: float
    #: Set when the handler has finished: no more extensions.
    done: bool = False


class Extensions:
    """The visibility extensions of a consumer's running handlers: when each
    delivery is due for one, and what to do with the outcome. No I/O and no
    locking: the sync and asyncio consumers drive it (with a thread and a
    task) and guard it as they need.

    A delivery received at ``t`` is first extended at ``t + period``; each
    extension sets its visibility timeout to ``visibility`` from the call on,
    and the next follows ``period`` after the call started. A call that
    failed recoverably is tried again after EXTENSION_RETRY (sooner if the
    delivery would expire first); a delivery that could not be extended
    (no longer in flight, a call that cannot succeed) is logged and left to
    expire. Failures never reach the handler."""

    def __init__(self, visibility: float, period: float) -> None:
        self.visibility, self.period = visibility, period
        self._heap: list[tuple[float, int, Lease]] = []
        self._seq = itertools.count()
        self._live = 0
        self._off = False  # the server has no ChangeVisibility

    def add(self, m: ReceivedMessage, received: float) -> Lease:
        """Schedules the delivery of a message received (the receive call
        started) at ``received``."""
        lease = Lease(m.receipt_handle, m.id, received + self.period, received + self.visibility)
        self._live += 1
        if not self._off:
            self._push(lease)
        return lease

    def remove(self, lease: Lease) -> None:
        """The handler of a delivery has finished."""
        if not lease.done:
            lease.done = True
            self._live -= 1
            if len(self._heap) > 2 * self._live + 1000:  # drop finished leases now and then
                self._heap = [e for e in self._heap if not e[2].done]
                heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        """When the next extension is due, None if none is scheduled."""
        while self._heap and self._heap[0][2].done:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def take_due(self, now: float) -> list[Lease]:
        """Unschedules and returns the deliveries due for an extension by
        ``now``, at most MAX_ACKS (one call)."""
        out: list[Lease] = []
        while self._heap and len(out) < MAX_ACKS and self._heap[0][0] <= now:
            _, _, lease = heapq.heappop(self._heap)
            if not lease.done:
                out.append(lease)
        return out

    def settle(
        self,
        leases: list[Lease],
        started: float,
        now: float,
        results: list[AckResult] | None = None,
        error: DMSError | None = None,
    ) -> None:
        """Takes the outcome of the extension call for ``leases`` that started
        at ``started``: its results or the error it raised; schedules the
        next extensions."""
        if error is not None and error.code == grpc.StatusCode.UNIMPLEMENTED:
            if not self._off:
                log.warning("opendms: the server cannot extend visibility timeouts (%s): handlers must finish in time", error)
            self._off = True
            self._heap.clear()
            return
        if error is None and results is not None and len(results) != len(leases):
            error = DMSError(grpc.StatusCode.INTERNAL, f"{len(results)} results for {len(leases)} handles")
        for i, lease in enumerate(leases):
            if lease.done:
                continue  # finished meanwhile: its ack may have settled it first
            if error is None:
                r = results[i]  # type: ignore[index]
                if r.applied:
                    lease.deadline = started + self.visibility
                    lease.due = started + self.period
                    self._push(lease)
                else:
                    log.warning(
                        "opendms: visibility of message %s not extended, it may be delivered again: %s: %s",
                        lease.message_id, r.reason, r.message,
                    )
                continue
            left = lease.deadline - now
            if recoverable(error) and left > 0.1:
                lease.due = now + min(EXTENSION_RETRY, left / 2)
                self._push(lease)
                log.warning("opendms: extending the visibility of message %s failed, retrying: %s", lease.message_id, error)
            else:
                log.error("opendms: extending the visibility of message %s failed, it may be delivered again: %s", lease.message_id, error)

    def _push(self, lease: Lease) -> None:
        heapq.heappush(self._heap, (lease.due, next(self._seq), lease))


def extension_timeout(leases: list[Lease], now: float) -> float:
    """The timeout of an extension call: no later than the first of the
    deliveries expires, within [1 s, ACK_TIMEOUT]."""
    return max(1.0, min(ACK_TIMEOUT, min(lease.deadline for lease in leases) - now))


class Consumer:
    """Receives the messages of a consumer group in a loop and calls a handler
    for each, up to ``concurrency`` at once (in a thread pool), then acks it
    with the handler's outcome:

    - the handler returns: SUCCESS, the group never gets the message again;
    - it raises :class:`opendms.Redeliver`: REDELIVER, the message comes back
      after the queue's retry delay (30 s);
    - it raises anything else: FAIL, the message is available again at once
      with ``delivery_count`` one higher (and counts toward
      ``max_consume_count`` when dead letters are enabled).

    The loop long-polls (``wait_time``) and asks only for as many messages as
    it has free handlers, so that messages do not wait invisible in the
    client. Acks are sent in batches by a thread of their own.

    A handler may run longer than the visibility timeout
    (``visibility_timeout``, 15 to 300 s, default 30 s): while it runs, the
    consumer extends the visibility of its message (ChangeVisibility, one
    call for all the messages due, from a thread of its own) every
    ``extension_period`` (default: two thirds of the visibility timeout,
    counted from the receive), each time by the visibility timeout, so the
    group does not get the message again meanwhile. Failures to extend are
    logged, not raised; the message may then be delivered again once its
    timeout passes. ``extend_visibility=False`` turns this off: handlers must
    then finish within the visibility timeout.

    :meth:`run` runs the loop in the calling thread until :meth:`stop`;
    :meth:`start` runs it in a background thread; as a context manager the
    consumer starts on entry and stops on exit. Stopping cancels the receive
    in progress, lets running handlers finish and acks their outcomes. A
    receive cancelled by the stop may have been answered by the server
    already; its messages come back after their visibility timeout.

    Failures the loop can outlast (server unreachable or overloaded) are
    logged and retried with backoff; any other failure of a receive (the
    queue or group does not exist, for example) stops the loop and is raised
    by :meth:`run` (or by :meth:`stop` after :meth:`start`).
    """

    def __init__(self, client, queue: str, group: str, handler: Callable[[ReceivedMessage], Any], opts: ConsumerOptions) -> None:
        self._client = client
        self._queue, self._group = queue, group
        self._handler = handler
        self._opts = opts.normalized()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._receiving: grpc.Future | None = None
        self._started = False
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._workers: set[threading.Thread] = set()  # the handler threads

    # --- lifecycle -------------------------------------------------------------

    def run(self) -> None:
        """Receives and handles messages until :meth:`stop`, then waits for the
        running handlers and acks their outcomes. A consumer runs once."""
        self._claim()
        self._run_to_end()

    def start(self) -> "Consumer":
        """Runs the loop in a background thread and returns at once."""
        self._claim()
        self._thread = threading.Thread(target=self._run_in_thread, name="opendms-consumer", daemon=True)
        self._thread.start()
        return self

    def _claim(self) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("a Consumer runs once")
            self._started = True

    def _run_to_end(self) -> None:
        try:
            self._run()
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._finished.set()

    def _run_in_thread(self) -> None:
        try:
            self._run_to_end()
        except BaseException:  # logged by the loop, raised by stop()
            pass

    def stop(self, timeout: float | None = None) -> None:
        """Stops the loop and waits until it has finished (running handlers
        done and their acks sent). Raises the error that stopped a loop
        started with :meth:`start`, and TimeoutError if it did not finish
        within ``timeout``. May be called more than once, from any thread
        (a handler included, which then must not wait: it returns at once)."""
        self._stop.set()
        with self._lock:
            receiving, started = self._receiving, self._started
        if receiving is not None:
            receiving.cancel()
        if not started or threading.current_thread() in self._workers:
            return  # a handler stopping its own consumer must not wait for itself
        if not self._finished.wait(timeout):
            raise TimeoutError("consumer did not stop in time")
        if self._thread is not None and self._error is not None:
            raise self._error

    def __enter__(self) -> "Consumer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the loop --------------------------------------------------------------

    def _run(self) -> None:
        opts = self._opts
        free = threading.Semaphore(opts.concurrency)
        acker = _Acker(self._client, self._queue, self._group)
        extender = None
        if opts.extend_visibility:
            extender = _Extender(self._client, self._queue, self._group, opts.visibility_seconds, opts.extension_period)

        def handle(m: ReceivedMessage, lease: Lease | None) -> None:
            self._workers.add(threading.current_thread())
            try:
                acker.add(handle_outcome(self._handler, m))
            finally:
                if lease is not None:
                    extender.remove(lease)  # type: ignore[union-attr]
                free.release()

        failures = 0
        with ThreadPoolExecutor(opts.concurrency, thread_name_prefix="opendms-handler") as pool:
            try:
                while not self._stop.is_set():
                    # Wait for one free handler, then take every other free one, so
                    # that a receive asks for no more than can be handled at once.
                    while not free.acquire(timeout=0.1):
                        if self._stop.is_set():
                            return
                    taken = 1
                    while taken < min(opts.concurrency, opts.max_messages) and free.acquire(blocking=False):
                        taken += 1
                    received = time.monotonic()  # the visibility timeouts start later
                    try:
                        msgs = self._receive(taken)
                    except DMSError as e:
                        for _ in range(taken):
                            free.release()
                        if self._stop.is_set():
                            return
                        if not recoverable(e):
                            log.error("opendms: consumer stops: receive failed: %s", e)
                            raise
                        failures += 1
                        pause = RECEIVE_RETRY.backoff(failures)
                        log.warning("opendms: receive failed, retrying in %.2fs: %s", pause, e)
                        self._stop.wait(pause)
                        continue
                    failures = 0
                    for _ in range(taken - len(msgs)):
                        free.release()
                    for m in msgs:
                        pool.submit(handle, m, extender.add(m, received) if extender is not None else None)
                    if not msgs and opts.wait_time < IDLE_PAUSE:
                        self._stop.wait(IDLE_PAUSE)
            finally:
                pool.shutdown(wait=True)
                if extender is not None:
                    extender.close()
                acker.close()

    def _receive(self, n: int) -> list[ReceivedMessage]:
        call: Call = self._client._calls.receive(
            self._queue,
            self._group,
            max_messages=n,
            wait_time=self._opts.wait_time,
            visibility_timeout=self._opts.visibility_timeout,
            consumer_id=self._opts.consumer_id,
            tag_filter=self._opts.tag_filter,
        )
        with self._lock:
            if self._stop.is_set():
                return []
            fut = self._client._start(call)
            self._receiving = fut
        try:
            return self._client._finish(call, fut)
        except grpc.FutureCancelledError:
            return []
        finally:
            with self._lock:
                self._receiving = None


class _Acker:
    """Sends a consumer's acks in batches from a thread of its own: each call
    takes what piled up while the previous one ran, so acks coalesce under
    load without a linger time."""

    def __init__(self, client, queue: str, group: str) -> None:
        self._client, self._queue, self._group = client, queue, group
        self._pending: _queue.SimpleQueue[Ack | None] = _queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="opendms-acker", daemon=True)
        self._thread.start()

    def add(self, ack: Ack) -> None:
        self._pending.put(ack)

    def close(self) -> None:
        """Sends what is pending and waits; no add may follow."""
        self._pending.put(None)
        self._thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_ACKS:
                try:
                    a = self._pending.get_nowait()
                except _queue.Empty:
                    break
                if a is None:
                    closing = True
                    break
                batch.append(a)
            self._send(batch)

    def _send(self, batch: list[Ack]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                results = self._client.ack(self._queue, self._group, batch, timeout=ACK_TIMEOUT)
            except DMSError as e:
                if not recoverable(e) or attempt >= ACK_RETRY.max_attempts:
                    log.error("opendms: ack of %d messages failed; they will be delivered again: %s", len(batch), e)
                    return
                time.sleep(ACK_RETRY.backoff(attempt))
                continue
            for a, r in zip(batch, results):
                if not r.applied:
                    log.warning("opendms: ack %s not applied: %s: %s", a.status.name, r.reason, r.message)
            return


class _Extender:
    """Extends the visibility of a consumer's messages whose handlers still
    run (see :class:`Extensions`), from a thread of its own."""

    def __init__(self, client, queue: str, group: str, visibility: float, period: float) -> None:
        self._client, self._queue, self._group = client, queue, group
        self._ext = Extensions(visibility, period)
        self._cond = threading.Condition()
        self._closed = False
        self._wake_at = math.inf  # when the thread wakes by itself; -inf while it calls
        self._thread = threading.Thread(target=self._run, name="opendms-extender", daemon=True)
        self._thread.start()

    def add(self, m: ReceivedMessage, received: float) -> Lease:
        with self._cond:
            lease = self._ext.add(m, received)
            if lease.due < self._wake_at:
                self._cond.notify()
            return lease

    def remove(self, lease: Lease) -> None:
        with self._cond:
            self._ext.remove(lease)

    def close(self) -> None:
        """Stops extending (all handlers have finished) and waits for the
        thread (and the call it may be making)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    leases = self._ext.take_due(now)
                    if leases:
                        self._wake_at = -math.inf
                        break
                    due = self._ext.next_due()
                    self._wake_at = math.inf if due is None else due
                    self._cond.wait(None if due is None else due - now)
            results, error = None, None
            try:
                results = self._client.change_visibility(
                    self._queue,
                    self._group,
                    [lease.handle for lease in leases],
                    self._ext.visibility,
                    timeout=extension_timeout(leases, now),
                )
            except DMSError as e:
                error = e
            except Exception as e:  # noqa: BLE001 - never let the thread die
                error = DMSError(grpc.StatusCode.UNKNOWN, repr(e))
            with self._cond:
                self._ext.settle(leases, now, time.monotonic(), results, error)
