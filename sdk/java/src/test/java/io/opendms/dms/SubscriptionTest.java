package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class SubscriptionTest extends DmsTestBase {

  @Test
  void streamsWithCreditsAndBatchedAcks() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(2).build());
    project.createGroup("q", "g");
    int n = 60;
    List<Message> msgs = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      msgs.add(Message.of("m" + i));
    }
    project.send("q", msgs);

    Set<String> done = ConcurrentHashMap.newKeySet();
    Set<Integer> retriedCounts = ConcurrentHashMap.newKeySet();
    SubscribeOptions opts =
        SubscribeOptions.builder().maxOutstanding(5).concurrency(2).ackBatchSize(4).ackInterval(Duration.ofMillis(20)).build();
    Subscription sub =
        project.subscribe(
            "q", "g",
            m -> {
              if (m.bodyAsString().equals("m7")) {
                retriedCounts.add(m.deliveryCount());
                if (m.deliveryCount() == 1) {
                  throw new IllegalStateException("fails once");
                }
              }
              Thread.sleep(2);
              done.add(m.bodyAsString());
            },
            opts);
    eventually(Duration.ofSeconds(30), "all handled, " + done.size() + " so far", () -> done.size() == n);
    sub.close();
    sub.done().get(1, TimeUnit.SECONDS);

    assertEquals(n + 1, sub.handledCount(), "each once, m7 twice");
    assertEquals(Set.of(1, 2), retriedCounts, "the failed message came back on the stream");
    assertTrue(sub.peakOutstanding() <= 5, "the server kept to the credits: " + sub.peakOutstanding());
    assertTrue(sub.acksApplied() > 0, "acks went on the stream");
    assertEquals(0, sub.acksNotApplied());
    GroupStats stats = project.groupStats("q", "g");
    assertEquals(n, stats.consumedMessages());
    assertEquals(0, stats.inFlightMessages());
    assertTrue(project.receive("q", "g", ReceiveOptions.builder().maxMessages(10).build()).isEmpty());
  }

  @Test
  void closeSettlesWhatWasHandled() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    List<Message> msgs = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      msgs.add(Message.of("m" + i));
    }
    project.send("q", msgs);
    Set<String> seen = ConcurrentHashMap.newKeySet();
    // Acks are held back (long interval, big batches): close must settle them.
    SubscribeOptions opts =
        SubscribeOptions.builder().maxOutstanding(10).concurrency(1).ackBatchSize(1000).ackInterval(Duration.ofSeconds(60)).build();
    Subscription sub = project.subscribe("q", "g", m -> seen.add(m.bodyAsString()), opts);
    eventually(Duration.ofSeconds(20), "first messages handled", () -> seen.size() >= 5);
    sub.close();
    long handled = sub.handledCount();
    GroupStats stats = project.groupStats("q", "g");
    assertEquals(handled, stats.consumedMessages(), "every handled message acked by close");
    Set<String> rest = new HashSet<>(bodies(receiveN("q", "g", (int) (30 - handled - stats.inFlightMessages()))));
    assertTrue(rest.stream().noneMatch(seen::contains), "nothing handled comes again");
  }

  @Test
  void aMissingGroupStopsTheSubscription() {
    project.createQueue(QueueConfig.of("q"));
    Subscription sub = project.subscribe("q", "nobody", m -> {});
    ExecutionException e = assertThrows(ExecutionException.class, () -> sub.done().get(20, TimeUnit.SECONDS));
    assertEquals("GROUP_NOT_FOUND", ((DmsException) e.getCause()).reason());
    sub.close();
  }
}
