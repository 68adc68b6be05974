package io.opendms.dms;

import io.grpc.Status;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * Sends the acks of a consumer's handlers with AckMessages in the background. It takes what
 * has piled up while the previous call ran, so that acks coalesce under load without a linger
 * time.
 */
final class Acker {
  private static final System.Logger LOG = System.getLogger(Acker.class.getName());
  private static final RetryPolicy RETRY =
      new RetryPolicy(3, Duration.ofMillis(100), Duration.ofSeconds(1));

  /**
   * An ack to send. A resent one (its first send's outcome unknown) may have been applied
   * already: then its handle is expired, which is not worth a warning.
   */
  private record Pending(Ack ack, String messageId, boolean resent) {}

  private static final Pending STOP = new Pending(new Ack("", AckStatus.SUCCESS), "", false);

  private final Project project;
  private final String queue;
  private final String group;
  private final LinkedBlockingQueue<Pending> queued = new LinkedBlockingQueue<>();
  private final Thread thread;

  Acker(Project project, String queue, String group) {
    this.project = project;
    this.queue = queue;
    this.group = group;
    this.thread = new Thread(this::run, "dms-acker " + queue + "/" + group);
    this.thread.setDaemon(true);
    this.thread.start();
  }

  void add(ReceivedMessage m, AckStatus status) {
    queued.add(new Pending(new Ack(m.receiptHandle(), status), m.messageId(), false));
  }

  void add(Ack ack, String messageId, boolean resent) {
    queued.add(new Pending(ack, messageId, resent));
  }

  /** Sends what is queued and waits; nothing may be added after. */
  void close() {
    queued.add(STOP);
    boolean interrupted = false;
    while (thread.isAlive()) {
      try {
        thread.join();
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  private void run() {
    List<Pending> batch = new ArrayList<>();
    boolean stop = false;
    while (!stop) {
      batch.clear();
      try {
        batch.add(queued.take());
      } catch (InterruptedException e) {
        continue; // nobody interrupts this thread; STOP ends it
      }
      queued.drainTo(batch, Limits.MAX_ACKS - 1);
      if (batch.removeIf(p -> p == STOP)) {
        stop = true;
        queued.drainTo(batch); // nothing is added after STOP, but be safe
      }
      for (int i = 0; i < batch.size(); i += Limits.MAX_ACKS) {
        send(batch.subList(i, Math.min(batch.size(), i + Limits.MAX_ACKS)));
      }
    }
  }

  private void send(List<Pending> batch) {
    if (batch.isEmpty()) {
      return;
    }
    List<Ack> acks = batch.stream().map(Pending::ack).toList();
    for (int attempt = 1; ; attempt++) {
      try {
        List<AckResult> results = project.ack(queue, group, acks);
        for (int i = 0; i < results.size(); i++) {
          AckResult r = results.get(i);
          if (!r.applied()
              && !(batch.get(i).resent() && r.reason().equals("RECEIPT_HANDLE_EXPIRED"))) {
            LOG.log(
                Level.WARNING,
                "dms: ack {0} of message {1} not applied: {2}: {3}",
                batch.get(i).ack().status(), batch.get(i).messageId(), r.reason(), r.message());
          }
        }
        return;
      } catch (DmsException e) {
        if (!recoverable(e) || attempt >= RETRY.maxAttempts()) {
          LOG.log(
              Level.ERROR,
              "dms: ack of {0} messages failed; they will be delivered again: {1}",
              acks.size(), e.getMessage());
          return;
        }
        sleep(RETRY.backoff(attempt));
      }
    }
  }

  /** Whether a loop should retry after {@code e} rather than stop: the server's health. */
  static boolean recoverable(DmsException e) {
    Status.Code c = e.code();
    return c == Status.Code.UNAVAILABLE
        || c == Status.Code.DEADLINE_EXCEEDED
        || c == Status.Code.INTERNAL
        || c == Status.Code.RESOURCE_EXHAUSTED
        || c == Status.Code.ABORTED
        || c == Status.Code.UNKNOWN;
  }

  private static void sleep(Duration d) {
    try {
      Thread.sleep(d.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
