package io.opendms.dms;

import io.opendms.dms.v1.SubscribeRequest;
import io.opendms.dms.v1.SubscribeResponse;
import io.opendms.dms.v1.SubscribeStart;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A streaming subscription to a consumer group over the {@code Subscribe} RPC: the
 * high-throughput alternative to a {@link Consumer}.
 *
 * <p>Flow control is by credits: the server sends a message only while this client has a
 * credit for it, so at most {@code maxOutstanding} messages are waiting for or running in a
 * handler at any time. As each message is handled, its outcome (see {@link MessageHandler}) is
 * queued as an ack and its credit is granted back; acks and credits go to the server on the same
 * stream in batches ({@code ackBatchSize}, at least every {@code ackInterval}).
 *
 * <p>When the stream fails in a way that comes and goes with the server's health (the server
 * restarts, say) the subscription opens a new one with backoff; acks still unanswered are sent
 * again (a receipt handle is valid on any stream). Any other failure (the group does not exist,
 * for example) stops the subscription, which {@link #done()} reports.
 *
 * <p>{@link #close()} ends the stream, lets the handlers finish the messages already received,
 * and settles every outcome with AckMessages before it returns. Messages the server had sent
 * but this client had not yet read come back after their visibility timeout.
 */
public final class Subscription implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(Subscription.class.getName());
  private static final RetryPolicy RECONNECT_BACKOFF =
      new RetryPolicy(Integer.MAX_VALUE, Duration.ofMillis(100), Duration.ofSeconds(5));

  private record Pending(Ack ack, String messageId) {}

  private final Project project;
  private final String queue;
  private final String group;
  private final MessageHandler handler;
  private final SubscribeOptions opts;
  private final ExecutorService executor;
  private final boolean ownExecutor;
  private final ScheduledExecutorService timer;
  private final CompletableFuture<Void> done = new CompletableFuture<>();
  private final AtomicBoolean stopping = new AtomicBoolean();

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition drained = lock.newCondition();
  // Guarded by lock:
  private ClientCallStreamObserver<SubscribeRequest> stream; // null between streams
  private long generation;
  private int outstanding; // received, not handled yet
  private int peakOutstanding;
  private int pendingCredits; // handled, credit not granted yet
  private final List<Pending> pendingAcks = new ArrayList<>();
  private final ArrayDeque<List<Pending>> unanswered = new ArrayDeque<>(); // sent, no results yet
  private boolean closing;
  private int failures;
  private long handled;
  private long acksApplied;
  private long acksNotApplied;

  Subscription(
      Project project, String queue, String group, MessageHandler handler, SubscribeOptions opts) {
    this.project = project;
    this.queue = queue;
    this.group = group;
    this.handler = handler;
    this.opts = opts;
    this.ownExecutor = opts.executor == null;
    this.executor =
        ownExecutor
            ? Executors.newFixedThreadPool(
                opts.concurrency, Consumer.daemonThreads("dms-subscriber " + queue + "/" + group))
            : opts.executor;
    ScheduledThreadPoolExecutor t =
        new ScheduledThreadPoolExecutor(
            1, Consumer.daemonThreads("dms-subscription " + queue + "/" + group));
    t.setRemoveOnCancelPolicy(true);
    this.timer = t;
    lock.lock();
    try {
      open();
    } finally {
      lock.unlock();
    }
    long every = opts.ackInterval.toNanos();
    timer.scheduleWithFixedDelay(this::flush, every, every, TimeUnit.NANOSECONDS);
  }

  /**
   * Completes when the subscription has stopped and settled everything: normally after {@link
   * #close()}, exceptionally with the {@link DmsException} that stopped it.
   */
  public CompletableFuture<Void> done() {
    return done.copy();
  }

  /** The number of messages handled so far, whatever their outcome. */
  public long handledCount() {
    lock.lock();
    try {
      return handled;
    } finally {
      lock.unlock();
    }
  }

  /** The number of acks the server applied, of those it answered on the stream. */
  public long acksApplied() {
    lock.lock();
    try {
      return acksApplied;
    } finally {
      lock.unlock();
    }
  }

  /** The number of acks the server answered on the stream as not applied. */
  public long acksNotApplied() {
    lock.lock();
    try {
      return acksNotApplied;
    } finally {
      lock.unlock();
    }
  }

  /** The most messages ever outstanding at once; never above {@code maxOutstanding}. */
  int peakOutstanding() {
    lock.lock();
    try {
      return peakOutstanding;
    } finally {
      lock.unlock();
    }
  }

  /** Opens a stream; the lock is held. */
  private void open() {
    long gen = ++generation;
    // What the server may send on the new stream: what the old one had not filled, in all.
    // Outstanding messages grant their credits back as they are handled.
    int credits = Math.max(0, opts.maxOutstanding - outstanding);
    pendingCredits = 0;
    // Acks whose results the old stream never gave may or may not be applied: send again.
    while (!unanswered.isEmpty()) {
      pendingAcks.addAll(0, unanswered.pollLast());
    }
    SubscribeStart.Builder start =
        SubscribeStart.newBuilder()
            .setGroup(project.groupResource(queue, group))
            .setCredits(credits)
            .setConsumerId(opts.consumerId);
    if (opts.visibilityTimeout != null) {
      start.setVisibilityTimeout(Protos.duration(opts.visibilityTimeout));
    }
    if (opts.tagFilter != null) {
      start.setTagFilter(opts.tagFilter.toProto());
    }
    project.client().consumerStreams.subscribe(new Responses(gen));
    // Responses.beforeStart has set stream, unless the call failed at once.
    if (stream != null && generation == gen) {
      stream.onNext(SubscribeRequest.newBuilder().setStart(start).build());
      flushLocked();
    }
  }

  /** Receives one stream's responses; a stale stream's are ignored. */
  private final class Responses
      implements ClientResponseObserver<SubscribeRequest, SubscribeResponse> {
    private final long gen;

    Responses(long gen) {
      this.gen = gen;
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<SubscribeRequest> requests) {
      stream = requests; // called from subscribe(), under open()'s lock
    }

    @Override
    public void onNext(SubscribeResponse resp) {
      Instant now = Instant.now();
      List<ReceivedMessage> msgs = new ArrayList<>(resp.getMessagesCount());
      Instant visibleAt =
          now.plus(
              opts.visibilityTimeout != null
                  ? opts.visibilityTimeout
                  : ReceiveOptions.DEFAULT_VISIBILITY_TIMEOUT);
      for (io.opendms.dms.v1.ReceivedMessage m : resp.getMessagesList()) {
        msgs.add(ReceivedMessage.fromProto(m, visibleAt));
      }
      List<Pending> answered = null;
      lock.lock();
      try {
        if (gen != generation) {
          return;
        }
        failures = 0;
        outstanding += msgs.size();
        peakOutstanding = Math.max(peakOutstanding, outstanding);
        if (resp.getAckResultsCount() > 0) {
          answered = unanswered.poll();
          countResults(answered, resp.getAckResultsList());
        }
      } finally {
        lock.unlock();
      }
      for (ReceivedMessage m : msgs) {
        try {
          executor.execute(() -> handle(m));
        } catch (RejectedExecutionException e) {
          LOG.log(
              Level.ERROR,
              "dms: executor refused a handler; message {0} comes back after its visibility timeout",
              m.messageId());
          lock.lock();
          try {
            outstanding--;
            drained.signalAll();
          } finally {
            lock.unlock();
          }
        }
      }
    }

    @Override
    public void onError(Throwable t) {
      ended(gen, DmsException.from(t));
    }

    @Override
    public void onCompleted() {
      ended(gen, null);
    }
  }

  /** Counts one batch's ack results, logging those not applied; the lock is held. */
  private void countResults(List<Pending> batch, List<io.opendms.dms.v1.AckResult> results) {
    if (batch == null || batch.size() != results.size()) {
      LOG.log(
          Level.WARNING,
          "dms: {0} ack results for a batch of {1}",
          results.size(), batch == null ? 0 : batch.size());
      return;
    }
    for (int i = 0; i < results.size(); i++) {
      io.opendms.dms.v1.AckResult r = results.get(i);
      if (r.getApplied()) {
        acksApplied++;
      } else {
        acksNotApplied++;
        LOG.log(
            Level.WARNING,
            "dms: ack {0} of message {1} not applied: {2}: {3}",
            batch.get(i).ack().status(), batch.get(i).messageId(), r.getErrorReason(),
            r.getErrorMessage());
      }
    }
  }

  /** A stream ended: reconnect, or stop when the failure is not one to outlast. */
  private void ended(long gen, DmsException err) {
    lock.lock();
    try {
      if (gen != generation || closing) {
        return;
      }
      stream = null;
      if (err == null || Acker.recoverable(err)) {
        failures++;
        Duration pause = RECONNECT_BACKOFF.backoff(failures);
        LOG.log(
            Level.WARNING,
            "dms: subscription stream ended, reopening in {0}: {1}",
            pause, err == null ? "closed by the server" : err.getMessage());
        timer.schedule(this::reopen, pause.toNanos(), TimeUnit.NANOSECONDS);
        return;
      }
    } finally {
      lock.unlock();
    }
    LOG.log(Level.ERROR, "dms: subscription stops: {0}", err.getMessage());
    // Not on the gRPC thread: stopping waits for handlers.
    Thread t = new Thread(() -> stop(err), "dms-subscription-stop " + queue + "/" + group);
    t.setDaemon(true);
    t.start();
  }

  private void reopen() {
    lock.lock();
    try {
      if (!closing && stream == null) {
        open();
      }
    } finally {
      lock.unlock();
    }
  }

  private void handle(ReceivedMessage m) {
    Throwable thrown = null;
    try {
      handler.handle(m);
    } catch (Throwable t) {
      thrown = t;
      if (!(t instanceof RedeliverException)) {
        LOG.log(Level.DEBUG, "dms: handler failed for message " + m.messageId(), t);
      }
    }
    Ack ack = new Ack(m.receiptHandle(), AckStatus.forOutcome(thrown));
    lock.lock();
    try {
      handled++;
      outstanding--;
      pendingAcks.add(new Pending(ack, m.messageId()));
      if (!closing) {
        pendingCredits++;
        if (pendingAcks.size() >= opts.ackBatchSize
            || pendingCredits >= Math.max(1, opts.maxOutstanding / 2)) {
          flushLocked();
        }
      }
      if (outstanding == 0) {
        drained.signalAll();
      }
    } finally {
      lock.unlock();
    }
  }

  private void flush() {
    lock.lock();
    try {
      flushLocked();
    } finally {
      lock.unlock();
    }
  }

  /** Sends pending acks and credits on the current stream, if there is one. */
  private void flushLocked() {
    if (stream == null || closing) {
      return;
    }
    while (!pendingAcks.isEmpty() || pendingCredits > 0) {
      int n = Math.min(pendingAcks.size(), Limits.MAX_ACKS);
      List<Pending> batch = new ArrayList<>(pendingAcks.subList(0, n));
      pendingAcks.subList(0, n).clear();
      SubscribeRequest.Builder req = SubscribeRequest.newBuilder().setCredits(pendingCredits);
      batch.forEach(p -> req.addAcks(p.ack().toProto()));
      pendingCredits = 0;
      if (!batch.isEmpty()) {
        unanswered.add(batch);
      }
      try {
        stream.onNext(req.build());
      } catch (RuntimeException e) {
        // The stream is failing; ended() reopens and resends.
        LOG.log(Level.DEBUG, "dms: subscription send failed: {0}", e.getMessage());
        return;
      }
    }
  }

  /**
   * Ends the stream, waits for the handlers to finish the messages already received, settles
   * all outcomes not yet confirmed with AckMessages, and releases the subscription's threads.
   * Calling it again waits for the same.
   */
  @Override
  public void close() {
    stop(null);
    try {
      done.exceptionally(e -> null).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (java.util.concurrent.ExecutionException e) {
      // exceptionally() leaves none
    }
  }

  private void stop(DmsException cause) {
    if (!stopping.compareAndSet(false, true)) {
      return;
    }
    List<Pending> unconfirmed = new ArrayList<>();
    ClientCallStreamObserver<SubscribeRequest> s;
    lock.lock();
    try {
      closing = true;
      generation++; // whatever the old stream still says is ignored
      s = stream;
      stream = null;
      unanswered.forEach(unconfirmed::addAll);
      unanswered.clear();
    } finally {
      lock.unlock();
    }
    if (s != null) {
      s.cancel("subscription closed", null);
    }
    timer.shutdownNow();
    boolean interrupted = false;
    lock.lock();
    try {
      while (outstanding > 0) {
        drained.awaitUninterruptibly();
      }
      interrupted = Thread.interrupted();
    } finally {
      lock.unlock();
    }
    // Settle everything on one unary path: acks resent here may have been applied already.
    Acker acker = new Acker(project, queue, group);
    unconfirmed.forEach(p -> acker.add(p.ack(), p.messageId(), true));
    lock.lock();
    try {
      pendingAcks.forEach(p -> acker.add(p.ack(), p.messageId(), false));
      pendingAcks.clear();
    } finally {
      lock.unlock();
    }
    acker.close();
    if (ownExecutor) {
      executor.shutdown();
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    if (cause != null) {
      done.completeExceptionally(cause);
    } else {
      done.complete(null);
    }
  }
}
