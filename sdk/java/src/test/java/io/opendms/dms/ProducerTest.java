package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class ProducerTest extends DmsTestBase {

  @Test
  void messagesFromManyThreadsAllArriveOnce() throws Exception {
    project.createQueue(QueueConfig.of("q"));
    project.createGroup("q", "g");
    int threads = 8;
    int perThread = 500;
    List<CompletableFuture<SendResult>> futures = new ArrayList<>();
    try (Producer producer = project.newProducer("q")) {
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      List<Future<List<CompletableFuture<SendResult>>>> submitted = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        int thread = t;
        submitted.add(
            pool.submit(
                () -> {
                  List<CompletableFuture<SendResult>> mine = new ArrayList<>();
                  for (int i = 0; i < perThread; i++) {
                    mine.add(producer.sendAsync(Message.of(thread + "-" + i)));
                  }
                  return mine;
                }));
      }
      for (var f : submitted) {
        futures.addAll(f.get(30, TimeUnit.SECONDS));
      }
      pool.shutdown();
      producer.flush();
      assertTrue(futures.stream().allMatch(f -> f.isDone() && !f.isCompletedExceptionally()));
      assertTrue(producer.calls() < threads * perThread / 10, "batched: " + producer.calls() + " calls");
    }
    Set<String> ids = new HashSet<>();
    for (var f : futures) {
      ids.add(f.get().messageId());
    }
    assertEquals(threads * perThread, ids.size(), "one id per message");

    List<ReceivedMessage> got = receiveN("q", "g", threads * perThread);
    Set<String> expected = new HashSet<>();
    for (int t = 0; t < threads; t++) {
      for (int i = 0; i < perThread; i++) {
        expected.add(t + "-" + i);
      }
    }
    assertEquals(threads * perThread, got.size());
    assertEquals(expected, new HashSet<>(bodies(got)), "every message once");
    assertTrue(project.receive("q", "g", ReceiveOptions.builder().maxMessages(10).build()).isEmpty());
  }

  @Test
  void batchesAreCutAtTheLimits() {
    project.createQueue(QueueConfig.of("q"));
    ProducerOptions opts =
        ProducerOptions.builder().linger(Duration.ofSeconds(10)).maxBatchMessages(10).maxInFlight(1).build();
    try (Producer producer = project.newProducer("q", opts)) {
      List<CompletableFuture<SendResult>> futures = new ArrayList<>();
      for (int i = 0; i < 95; i++) {
        futures.add(producer.sendAsync(Message.of("m" + i)));
      }
      producer.flush();
      assertEquals(10, producer.calls(), "9 full batches, then the rest on flush");
      assertTrue(futures.stream().allMatch(f -> f.isDone() && !f.isCompletedExceptionally()));
    }
    assertEquals(95, project.getQueue("q").messageCount());
  }

  @Test
  void closeSendsWhatIsBufferedAndRefusesMore() {
    project.createQueue(QueueConfig.of("q"));
    Producer producer =
        project.newProducer("q", ProducerOptions.builder().linger(Duration.ofSeconds(30)).build());
    CompletableFuture<SendResult> f = producer.sendAsync(Message.of("last"));
    producer.close();
    assertTrue(f.isDone() && !f.isCompletedExceptionally());
    assertThrows(IllegalStateException.class, () -> producer.sendAsync(Message.of("late")));
    producer.close(); // again: nothing left to do
    assertEquals(1, project.getQueue("q").messageCount());
  }

  @Test
  void failuresCompleteFuturesWithDmsException() {
    try (Producer producer = project.newProducer("missing")) {
      CompletableFuture<SendResult> f = producer.sendAsync(Message.of("x"));
      DmsException flushed = assertThrows(DmsException.class, producer::flush);
      assertEquals("QUEUE_NOT_FOUND", flushed.reason());
      ExecutionException e = assertThrows(ExecutionException.class, f::get);
      DmsException cause = (DmsException) e.getCause();
      assertEquals("QUEUE_NOT_FOUND", cause.reason());
      assertEquals(1, producer.calls(), "not retried");
    }
  }

  @Test
  void invalidAttributesAreRefusedWhenBuilt() {
    assertThrows(IllegalArgumentException.class, () -> Message.builder().attribute("when", new Object()));
  }
}
