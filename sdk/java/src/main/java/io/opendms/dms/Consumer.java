package io.opendms.dms;

import io.opendms.dms.v1.ChangeVisibilityRequest;
import io.opendms.dms.v1.ChangeVisibilityResponse;
import io.opendms.dms.v1.ReceiveMessagesResponse;
import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.ListenableFuture;
import com.google.common.util.concurrent.MoreExecutors;
import io.grpc.Status;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Receives the messages of a consumer group in a loop and hands each to a {@link
 * MessageHandler}, with up to {@code concurrency} handlers running at once, and acks each
 * message with its handler's outcome (see {@link MessageHandler}). It long-polls the server and
 * asks only for as many messages as it has free handlers. Acks are sent in batches in the
 * background.
 *
 * <p>While a handler runs, the consumer extends its message's visibility ({@link
 * Project#changeVisibility}): a period after the receive (two thirds of the visibility timeout by
 * default) and then every period until the handler returns, each time by the consumer's
 * visibility timeout, so that a handler may run longer than the visibility timeout without the
 * group getting its message again. A failed extension is logged and tried again while the
 * message is still invisible; see {@link ConsumerOptions.Builder#extendVisibility(boolean)}.
 *
 * <p>The consumer runs from its creation ({@link Project#newConsumer}) until {@link #close()}
 * or until a receive fails in a way the loop cannot outlast (the queue or group does not exist,
 * for example), which {@link #done()} reports. Failures that come and go with the server's
 * health are retried with backoff.
 *
 * <p>{@link #close()} stops receiving, lets the running handlers finish, acks their outcomes and
 * releases the consumer's threads. A receive cut short by the close may have been answered by
 * the server already; its messages come back after their visibility timeout.
 */
public final class Consumer implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(Consumer.class.getName());
  private static final RetryPolicy RECEIVE_BACKOFF =
      new RetryPolicy(Integer.MAX_VALUE, Duration.ofMillis(100), Duration.ofSeconds(5));
  /** The least time between two receives that came back empty without long polling. */
  private static final Duration IDLE_PAUSE = Duration.ofMillis(200);
  /** Pauses before an extension that failed is tried again, while the message is invisible. */
  private static final RetryPolicy EXTEND_RETRY =
      new RetryPolicy(Integer.MAX_VALUE, Duration.ofMillis(200), Duration.ofSeconds(2));

  private final Project project;
  private final String queue;
  private final String group;
  private final MessageHandler handler;
  private final ConsumerOptions opts;
  private final Semaphore permits;
  private final ExecutorService executor;
  private final boolean ownExecutor;
  private final Acker acker;
  private final boolean autoAck;
  private final Thread loop;
  private final CountDownLatch closing = new CountDownLatch(1);
  private final CompletableFuture<Void> done = new CompletableFuture<>();
  private final AtomicInteger handled = new AtomicInteger();
  private volatile ListenableFuture<ReceiveMessagesResponse> receiving;
  /** Runs the visibility extensions; null when the consumer does not extend. */
  private final ScheduledThreadPoolExecutor extender;
  /** Set once the server answered ChangeVisibility with UNIMPLEMENTED: extending stops. */
  private volatile boolean extensionUnsupported;

  Consumer(Project project, String queue, String group, MessageHandler handler, ConsumerOptions opts) {
    this.project = project;
    this.queue = queue;
    this.group = group;
    this.handler = handler;
    this.opts = opts;
    this.permits = new Semaphore(opts.concurrency);
    this.ownExecutor = opts.executor == null;
    this.executor =
        ownExecutor
            ? Executors.newFixedThreadPool(opts.concurrency, daemonThreads("dms-handler " + queue + "/" + group))
            : opts.executor;
    this.autoAck = opts.broadcast != null && opts.broadcast.autoAck();
    this.acker = new Acker(project, queue, group);
    if (opts.extendVisibility && !autoAck) {
      this.extender =
          new ScheduledThreadPoolExecutor(1, daemonThreads("dms-extender " + queue + "/" + group));
      this.extender.setRemoveOnCancelPolicy(true);
    } else {
      this.extender = null;
    }
    this.loop = new Thread(this::run, "dms-consumer " + queue + "/" + group);
    this.loop.setDaemon(true);
    this.loop.start();
  }

  static java.util.concurrent.ThreadFactory daemonThreads(String prefix) {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, prefix + " #" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }

  /**
   * Completes when the consumer has stopped and settled everything: normally after {@link
   * #close()}, exceptionally with the {@link DmsException} of a receive that stopped it.
   */
  public CompletableFuture<Void> done() {
    return done.copy();
  }

  /** The number of messages handled so far, whatever their outcome. */
  public int handledCount() {
    return handled.get();
  }

  private boolean closing() {
    return closing.getCount() == 0;
  }

  private void run() {
    DmsException fatal = null;
    try {
      fatal = receiveLoop();
    } catch (RuntimeException | Error e) {
      fatal = DmsException.from(e);
      LOG.log(Level.ERROR, "dms: consumer loop failed", e);
    } finally {
      // Let running handlers finish and ack what they did.
      permits.acquireUninterruptibly(opts.concurrency);
      acker.close();
      if (extender != null) {
        extender.shutdownNow(); // every handler has finished its extensions
      }
      if (ownExecutor) {
        executor.shutdown();
      }
      if (fatal != null) {
        done.completeExceptionally(fatal);
      } else {
        done.complete(null);
      }
    }
  }

  /** Receives and dispatches until close; returns the failure that stopped it, if any. */
  private DmsException receiveLoop() {
    int failures = 0;
    int perReceive = Math.min(opts.maxMessagesPerReceive, opts.concurrency);
    while (!closing()) {
      // Wait for one free handler, then take the other free ones, so that a receive asks for
      // no more than can be handled at once.
      int taken = 0;
      try {
        while (taken == 0 && !closing()) {
          if (permits.tryAcquire(100, TimeUnit.MILLISECONDS)) {
            taken = 1;
          }
        }
      } catch (InterruptedException e) {
        return null; // nobody but the JVM interrupts this thread
      }
      while (taken < perReceive && permits.tryAcquire()) {
        taken++;
      }
      if (closing()) {
        permits.release(taken);
        return null;
      }
      List<ReceivedMessage> msgs;
      try {
        msgs = receive(taken);
      } catch (DmsException e) {
        permits.release(taken);
        if (closing()) {
          return null;
        }
        if (!Acker.recoverable(e)) {
          LOG.log(Level.ERROR, "dms: consumer stops: receive failed: {0}", e.getMessage());
          return e;
        }
        failures++;
        Duration pause = RECEIVE_BACKOFF.backoff(failures);
        LOG.log(Level.WARNING, "dms: receive failed, retrying in {0}: {1}", pause, e.getMessage());
        pause(pause);
        continue;
      }
      failures = 0;
      permits.release(taken - msgs.size());
      if (msgs.isEmpty() && opts.waitTime.compareTo(IDLE_PAUSE) < 0) {
        pause(IDLE_PAUSE); // without long polling an idle queue would be asked in a tight loop
      }
      // Received messages are invisible to the group: handle them even if closing.
      for (ReceivedMessage m : msgs) {
        Extension ext = extender != null ? new Extension(m) : null;
        if (ext != null) {
          ext.start();
        }
        try {
          executor.execute(() -> handle(m, ext));
        } catch (RejectedExecutionException e) {
          if (ext != null) {
            ext.finish();
          }
          permits.release();
          LOG.log(
              Level.ERROR,
              "dms: executor refused a handler; message {0} comes back after its visibility timeout",
              m.messageId());
        }
      }
    }
    return null;
  }

  private List<ReceivedMessage> receive(int n) {
    ReceiveOptions ro = opts.receiveOptions(n);
    var req = Project.receiveRequest(project.groupResource(queue, group), ro);
    Instant start = Instant.now();
    // A receive that hangs well past its wait time is given up, so that a connection lost
    // without notice does not stall the loop.
    ListenableFuture<ReceiveMessagesResponse> f =
        project.withDeadline(project.client().consumerFutures, opts.waitTime).receiveMessages(req);
    receiving = f;
    if (closing()) {
      f.cancel(true);
    }
    try {
      return Project.received(f.get().getMessagesList(), start, ro);
    } catch (ExecutionException | CancellationException e) {
      throw DmsException.from(e);
    } catch (InterruptedException e) {
      f.cancel(true);
      throw DmsException.from(e);
    } finally {
      receiving = null;
    }
  }

  private void handle(ReceivedMessage m, Extension ext) {
    Throwable thrown = null;
    try {
      handler.handle(m);
    } catch (Throwable t) {
      thrown = t;
      if (!(t instanceof RedeliverException)) {
        LOG.log(Level.DEBUG, "dms: handler failed for message " + m.messageId(), t);
      }
    } finally {
      if (ext != null) {
        ext.finish();
      }
      handled.incrementAndGet();
      if (!autoAck) {
        acker.add(m, AckStatus.forOutcome(thrown));
      }
      permits.release();
    }
  }

  /**
   * Extends the visibility of one message while its handler runs: a period after the receive,
   * then a period after each extension, by the consumer's visibility timeout. Each extension is
   * one asynchronous ChangeVisibility call; the next is scheduled once it is answered.
   */
  private final class Extension implements Runnable {
    private final ReceivedMessage message;
    private final long timeoutNanos = opts.effectiveVisibilityTimeout().toNanos();
    private final long periodNanos = opts.extensionPeriod.toNanos();
    /** System.nanoTime() when the message becomes visible again, as estimated (early). */
    private volatile long deadline;
    private volatile int failures;
    private boolean finished; // guarded by this
    private ScheduledFuture<?> next; // guarded by this

    Extension(ReceivedMessage message) {
      this.message = message;
      this.deadline =
          System.nanoTime() + Duration.between(Instant.now(), message.visibleAt()).toNanos();
    }

    /** Schedules the first extension, a period after the receive. */
    void start() {
      schedule(deadline - timeoutNanos + periodNanos - System.nanoTime());
    }

    /** Stops extending: the handler returned. A call under way is let be. */
    synchronized void finish() {
      finished = true;
      if (next != null) {
        next.cancel(false);
      }
    }

    private synchronized boolean finished() {
      return finished;
    }

    private synchronized void schedule(long delayNanos) {
      if (finished) {
        return;
      }
      try {
        next = extender.schedule(this, Math.max(0, delayNanos), TimeUnit.NANOSECONDS);
      } catch (RejectedExecutionException e) {
        // The consumer has stopped: its handlers have all returned.
      }
    }

    @Override
    public void run() {
      if (finished() || extensionUnsupported) {
        return;
      }
      long start = System.nanoTime();
      var req =
          ChangeVisibilityRequest.newBuilder()
              .setGroup(project.groupResource(queue, group))
              .addReceiptHandles(message.receiptHandle())
              .setVisibilityTimeout(Protos.duration(opts.effectiveVisibilityTimeout()))
              .build();
      // A call still unanswered when the message is visible again is of no use.
      long budget =
          Math.min(
              project.client().callTimeout.toNanos(),
              Math.max(deadline - start, TimeUnit.SECONDS.toNanos(1)));
      ListenableFuture<ChangeVisibilityResponse> f;
      try {
        f =
            project
                .client()
                .consumerFutures
                .withDeadlineAfter(budget, TimeUnit.NANOSECONDS)
                .changeVisibility(req);
      } catch (RuntimeException e) {
        failed(DmsException.from(e));
        return;
      }
      Futures.addCallback(
          f,
          new FutureCallback<>() {
            @Override
            public void onSuccess(ChangeVisibilityResponse resp) {
              answered(start, resp);
            }

            @Override
            public void onFailure(Throwable t) {
              failed(DmsException.from(t));
            }
          },
          MoreExecutors.directExecutor());
    }

    private void answered(long start, ChangeVisibilityResponse resp) {
      AckResult r =
          resp.getResultsCount() > 0
              ? AckResult.fromProto(resp.getResults(0))
              : new AckResult(false, "", "the server returned no result");
      if (r.applied()) {
        deadline = start + timeoutNanos;
        failures = 0;
        schedule(start + periodNanos - System.nanoTime());
      } else if (!finished()) {
        // Expired (or otherwise lost): no later extension can bring it back.
        LOG.log(
            Level.WARNING,
            "dms: visibility of message {0} not extended, it may be delivered again: {1}: {2}",
            message.messageId(), r.reason(), r.message());
      }
    }

    private void failed(DmsException e) {
      if (finished()) {
        return;
      }
      if (e.code() == Status.Code.UNIMPLEMENTED) {
        if (!extensionUnsupported) {
          extensionUnsupported = true;
          LOG.log(
              Level.WARNING,
              "dms: the server cannot extend visibility timeouts (ChangeVisibility is"
                  + " unimplemented); handlers must finish within the visibility timeout");
        }
        return;
      }
      int n = failures + 1;
      failures = n;
      Duration pause = EXTEND_RETRY.backoff(n);
      if (Acker.recoverable(e) && System.nanoTime() + pause.toNanos() < deadline) {
        LOG.log(
            Level.WARNING,
            "dms: extending the visibility of message {0} failed, retrying in {1}: {2}",
            message.messageId(), pause, e.getMessage());
        schedule(pause.toNanos());
      } else {
        LOG.log(
            Level.WARNING,
            "dms: extending the visibility of message {0} failed, it may be delivered again: {1}",
            message.messageId(), e.getMessage());
      }
    }
  }

  private void pause(Duration d) {
    try {
      closing.await(d.toNanos(), TimeUnit.NANOSECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Stops receiving, waits for the running handlers, acks their outcomes and releases the
   * consumer's threads. Calling it again returns once the consumer has stopped.
   */
  @Override
  public void close() {
    closing.countDown();
    var f = receiving;
    if (f != null) {
      f.cancel(true);
    }
    boolean interrupted = false;
    while (loop.isAlive()) {
      try {
        loop.join();
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
