package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Throughput of the batching producer: 1 KiB messages from a few threads against the test
 * server, for a bounded time. Left out of the normal run; run it with
 * {@code mvn -B test -Dgroups=bench -Ddms.test.excludedGroups= -Dtest=ProducerBenchTest}.
 */
@Tag("bench")
class ProducerBenchTest extends DmsTestBase {

  @Test
  void oneKibMessagesThroughTheBatchingProducer() throws Exception {
    project.createQueue(QueueConfig.of("bench"));
    byte[] body = new byte[1024];
    int threads = 4;
    long maxMessages = 2_000_000;
    Duration runFor = Duration.ofSeconds(10);
    AtomicLong sent = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    long start = System.nanoTime();
    long calls;
    try (Producer producer = project.newProducer("bench")) {
      List<Thread> workers = new ArrayList<>();
      long stopAt = start + runFor.toNanos();
      for (int t = 0; t < threads; t++) {
        Thread w =
            new Thread(
                () -> {
                  Message m = Message.of(body);
                  while (System.nanoTime() < stopAt && sent.get() < maxMessages) {
                    CompletableFuture<SendResult> f = producer.sendAsync(m);
                    f.whenComplete((r, e) -> { if (e != null) failed.incrementAndGet(); });
                    sent.incrementAndGet();
                  }
                });
        w.start();
        workers.add(w);
      }
      for (Thread w : workers) {
        w.join();
      }
      producer.flush();
      calls = producer.calls();
    }
    double secs = (System.nanoTime() - start) / 1e9;
    long n = sent.get();
    System.out.printf(
        "BENCH producer 1 KiB: %d messages in %.2f s = %.0f msgs/s (%.1f MiB/s), %d calls, %.0f messages per call%n",
        n, secs, n / secs, n / secs / 1024, calls, (double) n / calls);
    assertEquals(0, failed.get());
    assertEquals(n, project.getQueue("bench").messageCount());
  }
}
