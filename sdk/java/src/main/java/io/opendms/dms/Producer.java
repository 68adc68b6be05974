package io.opendms.dms;

import io.opendms.dms.v1.SendMessagesRequest;
import io.opendms.dms.v1.SendMessagesResponse;
import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.MoreExecutors;
import io.grpc.Status;
import java.lang.System.Logger.Level;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Sends messages to one queue in batches. Messages handed to {@link #sendAsync} by any number
 * of threads are coalesced into {@code SendMessages} calls of up to {@code maxBatchMessages}
 * messages and {@code maxBatchBytes} bytes (at most 1000 and 8 MiB); a batch is sent when it is
 * full, when its linger time has passed, or on {@link #flush()} and {@link #close()}. At most
 * {@code maxInFlight} calls run at once; while they all run, messages keep collecting, so
 * batches grow under load even without linger.
 *
 * <p>A call that fails with {@code UNAVAILABLE} or {@code DEADLINE_EXCEEDED} is retried with
 * exponential backoff (see {@link ProducerOptions.Builder#retryPolicy}). A call that timed out,
 * or whose connection was lost while the server was answering, may have been stored although it
 * failed; so every batch carries an idempotence key (this producer's random id and the batch's
 * sequence number), and the server answers a retry of a stored batch with the first attempt's
 * results instead of storing it again. <b>A retry can still store a batch twice</b> when the
 * server no longer remembers the key (the first attempt is not among the last 100000 messages of
 * its partition) or predates idempotence keys: delivery is at least once, and consumers that
 * cannot tolerate duplicates must deduplicate (for example on an id carried in an attribute).
 *
 * <p>With {@code maxInFlight(1)} the messages of one thread are stored in the order it handed
 * them over; with more calls in flight, batches can overtake one another.
 *
 * <p>A producer is safe for concurrent use. Close it to send what is buffered and release its
 * threads.
 */
public final class Producer implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(Producer.class.getName());

  /** What a buffered message costs beyond its bytes. */
  private static final long MESSAGE_OVERHEAD = 64;

  private final Project project;
  private final String queue;
  private final ProducerOptions opts;

  private final ReentrantLock lock = new ReentrantLock();
  /** Signals the dispatcher: a batch to send, a free call slot, or close. */
  private final Condition changed = lock.newCondition();
  /** Signals senders waiting for buffer room, and close waiting for batches to settle. */
  private final Condition settled = lock.newCondition();

  private Batch current; // collecting messages
  private final ArrayDeque<Batch> sealed = new ArrayDeque<>(); // waiting for a call slot
  private final Set<Batch> unsettled = Collections.newSetFromMap(new IdentityHashMap<>());
  private int inFlight;
  private long buffered;
  private boolean closed;

  private final Thread dispatcher;
  private final ScheduledExecutorService retries;
  private final AtomicLong calls = new AtomicLong();
  /** Names this producer in idempotence keys. */
  private final String producerId = newProducerId();
  private final AtomicLong batchSeq = new AtomicLong();

  private static final class Batch {
    final List<Message> messages = new ArrayList<>();
    final List<CompletableFuture<SendResult>> futures = new ArrayList<>();
    final CompletableFuture<Void> done = new CompletableFuture<>();
    final long deadlineNanos;
    int bytes;
    long weight;
    int attempts;
    SendMessagesRequest request;

    Batch(long deadlineNanos) {
      this.deadlineNanos = deadlineNanos;
    }
  }

  Producer(Project project, String queueResource, ProducerOptions opts) {
    this.project = project;
    this.queue = queueResource;
    this.opts = opts;
    ScheduledThreadPoolExecutor timer =
        new ScheduledThreadPoolExecutor(
            1,
            r -> {
              Thread t = new Thread(r, "dms-producer-retry " + queueResource);
              t.setDaemon(true);
              return t;
            });
    timer.setRemoveOnCancelPolicy(true);
    this.retries = timer;
    this.dispatcher = new Thread(this::dispatch, "dms-producer " + queueResource);
    this.dispatcher.setDaemon(true);
    this.dispatcher.start();
  }

  /**
   * Hands a message to the producer and returns its future at once, unless the buffer is full
   * ({@code maxBufferedBytes}): then it blocks until there is room. The future completes with
   * where the message was stored, or exceptionally with a {@link DmsException} (after retries,
   * for retryable failures); if the waiting thread is interrupted, the future completes
   * exceptionally with code {@code CANCELLED} and the message is not sent.
   *
   * <p>Futures complete on a gRPC thread: callbacks attached without an executor run there and
   * should be quick. They may hand over more messages, but must not call {@link #flush()} or
   * {@link #close()}, which wait for the callbacks' own batch.
   *
   * @throws IllegalStateException when the producer is closed
   */
  public CompletableFuture<SendResult> sendAsync(Message message) {
    int size = message.size();
    long weight = Math.min(size + MESSAGE_OVERHEAD, opts.maxBufferedBytes);
    CompletableFuture<SendResult> future = new CompletableFuture<>();
    lock.lock();
    try {
      ensureOpen();
      while (buffered + weight > opts.maxBufferedBytes) {
        // Waiting for the collecting batch's linger time would only make the wait longer.
        if (current != null) {
          sealLocked();
        }
        try {
          settled.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          future.completeExceptionally(DmsException.from(e));
          return future;
        }
        ensureOpen();
      }
      Batch b = current;
      if (b != null
          && (b.messages.size() >= opts.maxBatchMessages || b.bytes + size > opts.maxBatchBytes)) {
        sealLocked();
      }
      if (current == null) {
        current = new Batch(System.nanoTime() + opts.linger.toNanos());
        unsettled.add(current);
        changed.signalAll(); // the dispatcher needs the new deadline
      }
      b = current;
      b.messages.add(message);
      b.futures.add(future);
      b.bytes += size;
      b.weight += weight;
      buffered += weight;
      if (b.messages.size() >= opts.maxBatchMessages || b.bytes >= opts.maxBatchBytes) {
        sealLocked();
      }
    } finally {
      lock.unlock();
    }
    return future;
  }

  private void ensureOpen() {
    if (closed) {
      throw new IllegalStateException("dms: producer closed");
    }
  }

  private void sealLocked() {
    sealed.add(current);
    current = null;
    changed.signalAll();
  }

  /** Hands batches to calls as call slots free up, until close and everything is handed over. */
  private void dispatch() {
    lock.lock();
    try {
      while (true) {
        if (inFlight < opts.maxInFlight) {
          Batch b = sealed.poll();
          if (b == null
              && current != null
              && (closed || System.nanoTime() - current.deadlineNanos >= 0)) {
            b = current;
            current = null;
          }
          if (b != null) {
            inFlight++;
            lock.unlock();
            try {
              start(b);
            } finally {
              lock.lock();
            }
            continue;
          }
        }
        if (closed && current == null && sealed.isEmpty()) {
          return;
        }
        if (inFlight < opts.maxInFlight && current != null) {
          changed.awaitNanos(current.deadlineNanos - System.nanoTime());
        } else {
          changed.await();
        }
      }
    } catch (InterruptedException e) {
      // Only close interrupts, and only after giving up.
      Thread.currentThread().interrupt();
    } finally {
      lock.unlock();
    }
  }

  /** Makes one attempt of a batch's call. */
  private void start(Batch b) {
    if (b.request == null) {
      // Every attempt of a batch carries the same key, so that the server stores it once.
      b.request =
          Project.sendRequest(queue, b.messages).toBuilder()
              .setIdempotenceKey(producerId + "-" + batchSeq.incrementAndGet())
              .build();
    }
    b.attempts++;
    calls.incrementAndGet();
    var call =
        project
            .client()
            .producerFutures
            .withDeadlineAfter(opts.sendTimeout.toNanos(), TimeUnit.NANOSECONDS)
            .sendMessages(b.request);
    Futures.addCallback(
        call,
        new FutureCallback<SendMessagesResponse>() {
          @Override
          public void onSuccess(SendMessagesResponse resp) {
            if (resp.getResultsCount() != b.futures.size()) {
              finish(
                  b,
                  null,
                  new DmsException(
                      Status.Code.INTERNAL,
                      "",
                      "the server answered " + resp.getResultsCount() + " results for "
                          + b.futures.size() + " messages",
                      null));
              return;
            }
            finish(b, Project.sendResults(resp), null);
          }

          @Override
          public void onFailure(Throwable t) {
            DmsException e = DmsException.from(t);
            if (e.isRetryable() && b.attempts < opts.retryPolicy.maxAttempts()) {
              long pause = opts.retryPolicy.backoff(b.attempts).toNanos();
              LOG.log(
                  Level.DEBUG,
                  "dms: send of {0} messages failed (attempt {1}), retrying: {2}",
                  b.messages.size(), b.attempts, e.getMessage());
              retries.schedule(() -> start(b), pause, TimeUnit.NANOSECONDS);
              return;
            }
            LOG.log(
                Level.WARNING,
                "dms: send of {0} messages failed after {1} attempts: {2}",
                b.messages.size(), b.attempts, e.getMessage());
            finish(b, null, e);
          }
        },
        MoreExecutors.directExecutor());
  }

  /** Settles a batch: with one result per message, or with a failure for all. */
  private void finish(Batch b, List<SendResult> results, DmsException err) {
    // Free the call slot and the buffer first: a callback of a message's future may hand over
    // more messages, and must not wait for room that only this batch can give back.
    lock.lock();
    try {
      inFlight--;
      buffered -= b.weight;
      changed.signalAll();
      settled.signalAll();
    } finally {
      lock.unlock();
    }
    for (int i = 0; i < b.futures.size(); i++) {
      if (err != null) {
        b.futures.get(i).completeExceptionally(err);
      } else {
        b.futures.get(i).complete(results.get(i));
      }
    }
    // Only now is the batch settled for flush and close: its futures are complete.
    lock.lock();
    try {
      unsettled.remove(b);
      settled.signalAll();
    } finally {
      lock.unlock();
    }
    if (err != null) {
      b.done.completeExceptionally(err);
    } else {
      b.done.complete(null);
    }
  }

  /**
   * Sends every message handed over before the call without waiting for linger times, and
   * waits until all of them are settled.
   *
   * @throws DmsException the failure of a batch that could not be sent, if any (each message's
   *     future has its own outcome); code {@code CANCELLED} if the thread was interrupted
   */
  public void flush() {
    List<Batch> pending;
    lock.lock();
    try {
      if (current != null) {
        sealLocked();
      }
      pending = new ArrayList<>(unsettled);
    } finally {
      lock.unlock();
    }
    DmsException first = null;
    for (Batch b : pending) {
      try {
        b.done.get();
      } catch (ExecutionException e) {
        if (first == null) {
          first = DmsException.from(e);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw DmsException.from(e);
      }
    }
    if (first != null) {
      throw first;
    }
  }

  /**
   * Sends what is buffered, waits until every message is settled (retries included), and
   * releases the producer's threads. Later {@link #sendAsync} calls throw. Calling it again
   * waits again and does nothing else.
   */
  @Override
  public void close() {
    lock.lock();
    try {
      closed = true;
      changed.signalAll();
      settled.signalAll(); // senders waiting for room give up
    } finally {
      lock.unlock();
    }
    try {
      dispatcher.join();
      lock.lock();
      try {
        while (!unsettled.isEmpty()) {
          settled.await();
        }
      } finally {
        lock.unlock();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      retries.shutdown();
    }
  }

  private static String newProducerId() {
    byte[] id = new byte[16];
    new java.security.SecureRandom().nextBytes(id);
    return "java-" + java.util.HexFormat.of().formatHex(id);
  }

  /** The number of SendMessages calls made so far, retries included. */
  long calls() {
    return calls.get();
  }
}
