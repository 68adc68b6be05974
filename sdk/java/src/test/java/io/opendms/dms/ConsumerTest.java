package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class ConsumerTest extends DmsTestBase {
  private static final ConsumerOptions QUICK =
      ConsumerOptions.builder().concurrency(4).waitTime(Duration.ofSeconds(1)).build();

  @Test
  void aFailingHandlerGetsTheMessageAgain() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("m"));
    List<Integer> deliveries = new CopyOnWriteArrayList<>();
    CountDownLatch succeeded = new CountDownLatch(1);
    Consumer consumer =
        project.newConsumer(
            "q", "g",
            m -> {
              deliveries.add(m.deliveryCount());
              if (m.deliveryCount() == 1) {
                throw new IllegalStateException("first attempt fails");
              }
              succeeded.countDown();
            },
            QUICK);
    assertTrue(succeeded.await(20, TimeUnit.SECONDS), "handled again: " + deliveries);
    consumer.close();
    assertEquals(List.of(1, 2), deliveries);
    assertEquals(2, consumer.handledCount());
    consumer.done().get(1, TimeUnit.SECONDS); // completed normally
    GroupStats stats = project.groupStats("q", "g");
    assertEquals(1, stats.consumedMessages(), "close acked the success before it returned");
    assertEquals(0, stats.inFlightMessages());
  }

  @Test
  void handlersRunConcurrentlyAndCloseWaitsForThem() throws Exception {
    project.createQueue(QueueConfig.of("q"));
    project.createGroup("q", "g");
    int n = 20;
    for (int i = 0; i < n; i++) {
      project.send("q", Message.of("m" + i));
    }
    AtomicInteger running = new AtomicInteger();
    AtomicInteger peak = new AtomicInteger();
    ExecutorService pool = Executors.newCachedThreadPool();
    Consumer consumer =
        project.newConsumer(
            "q", "g",
            m -> {
              peak.accumulateAndGet(running.incrementAndGet(), Math::max);
              Thread.sleep(100);
              running.decrementAndGet();
            },
            ConsumerOptions.builder().concurrency(4).waitTime(Duration.ofSeconds(1)).executor(pool).build());
    eventually(Duration.ofSeconds(20), "some handled", () -> consumer.handledCount() >= 6);
    consumer.close();
    int handled = consumer.handledCount();
    assertEquals(0, running.get(), "close returned after the running handlers finished");
    assertTrue(peak.get() > 1 && peak.get() <= 4, "peak concurrency " + peak.get());
    assertFalse(pool.isShutdown(), "a given executor is left alone");
    pool.shutdown();
    assertEquals(handled, project.groupStats("q", "g").consumedMessages(), "every finished handler acked");
  }

  @Test
  void redeliverExceptionDelaysTheMessage() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("later"));
    try (Consumer consumer =
        project.newConsumer("q", "g", m -> { throw new RedeliverException("not yet"); }, QUICK)) {
      eventually(Duration.ofSeconds(10), "handled once", () -> consumer.handledCount() == 1);
      Thread.sleep(1500);
      assertEquals(1, consumer.handledCount(), "not delivered again before the retry delay");
    }
  }

  @Test
  void aMissingGroupStopsTheConsumer() {
    project.createQueue(QueueConfig.of("q"));
    Consumer consumer = project.newConsumer("q", "nobody", m -> {}, QUICK);
    ExecutionException e = assertThrows(ExecutionException.class, () -> consumer.done().get(20, TimeUnit.SECONDS));
    assertEquals("GROUP_NOT_FOUND", ((DmsException) e.getCause()).reason());
    consumer.close();
  }
}
