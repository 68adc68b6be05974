package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * ChangeVisibility by hand and by a consumer. The server's shortest visibility timeout is 15 s,
 * so two of these tests wait about that long; they keep to it.
 */
class VisibilityTest extends DmsTestBase {
  private static final Duration MIN_VISIBILITY = Duration.ofSeconds(15);

  private ReceivedMessage receiveOne(String queue, String group, Duration visibility) {
    List<ReceivedMessage> got =
        project.receive(
            queue,
            group,
            ReceiveOptions.builder()
                .maxMessages(1)
                .waitTime(Duration.ofSeconds(5))
                .visibilityTimeout(visibility)
                .build());
    assertEquals(1, got.size(), "received " + got);
    return got.get(0);
  }

  private List<ReceivedMessage> receiveWithin(String queue, String group, Duration wait) {
    return project.receive(
        queue, group, ReceiveOptions.builder().maxMessages(10).waitTime(wait).build());
  }

  private static void sleepUntil(long nanoTime) throws InterruptedException {
    long left = nanoTime - System.nanoTime();
    if (left > 0) {
      TimeUnit.NANOSECONDS.sleep(left);
    }
  }

  @Test
  void changeVisibilityKeepsAMessageInvisiblePastItsDeadline() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("slow work"));
    ReceivedMessage m = receiveOne("q", "g", MIN_VISIBILITY);
    long received = System.nanoTime(); // the server's deadline is before received + 15 s

    List<AckResult> extended =
        project.changeVisibility("q", "g", List.of(m.receiptHandle()), Duration.ofSeconds(60));
    assertEquals(List.of(new AckResult(true, "", "")), extended);

    // Past the original deadline: still invisible.
    sleepUntil(received + MIN_VISIBILITY.toNanos() + TimeUnit.MILLISECONDS.toNanos(300));
    assertEquals(List.of(), receiveWithin("q", "g", Duration.ofSeconds(1)));

    // The handle is still valid: the ack settles the delivery.
    assertTrue(project.ack("q", "g", m.success()).get(0).applied());
    GroupStats stats = project.groupStats("q", "g");
    assertEquals(1, stats.consumedMessages());
    assertEquals(0, stats.inFlightMessages());
  }

  @Test
  void changeVisibilityReportsEachHandle() {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("a"));
    ReceivedMessage m = receiveOne("q", "g", MIN_VISIBILITY);

    List<AckResult> results =
        project.changeVisibility(
            "q", "g", List.of("not-a-receipt-handle", m.receiptHandle()), Duration.ofSeconds(30));
    assertEquals(2, results.size(), results.toString());
    assertFalse(results.get(0).applied());
    assertEquals("RECEIPT_HANDLE_INVALID", results.get(0).reason());
    assertFalse(results.get(0).message().isEmpty());
    assertTrue(results.get(1).applied(), results.toString());

    // By message, too; a shorter timeout is allowed.
    assertTrue(project.changeVisibility("q", "g", MIN_VISIBILITY, m).get(0).applied());
    assertEquals(List.of(), project.changeVisibility("q", "g", List.of(), MIN_VISIBILITY));

    DmsException e =
        assertThrows(
            DmsException.class,
            () -> project.changeVisibility("q", "g", Duration.ofSeconds(5), m));
    assertEquals("VISIBILITY_TIMEOUT_INVALID", e.reason());

    assertTrue(project.ack("q", "g", m.success()).get(0).applied());
    AckResult settled = project.changeVisibility("q", "g", MIN_VISIBILITY, m).get(0);
    assertFalse(settled.applied());
    assertEquals("RECEIPT_HANDLE_EXPIRED", settled.reason(), "a settled delivery is not in flight");
  }

  @Test
  void theConsumerExtendsTheVisibilityOfASlowHandler() throws Exception {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("slow"));
    List<Integer> deliveries = new CopyOnWriteArrayList<>();
    CountDownLatch started = new CountDownLatch(1);
    Duration handlerTime = Duration.ofSeconds(17);
    // Two handlers: if the message came back, this consumer could get it again too.
    Consumer consumer =
        project.newConsumer(
            "q", "g",
            m -> {
              deliveries.add(m.deliveryCount());
              started.countDown();
              Thread.sleep(handlerTime.toMillis());
            },
            ConsumerOptions.builder()
                .concurrency(2)
                .waitTime(Duration.ofSeconds(1))
                .visibilityTimeout(MIN_VISIBILITY)
                .build());
    try {
      assertTrue(started.await(20, TimeUnit.SECONDS), "handler started");
      long start = System.nanoTime(); // after the receive, so after the server's deadline base
      // Past the visibility timeout while the handler still runs: nobody gets the message.
      sleepUntil(start + MIN_VISIBILITY.toNanos() + TimeUnit.MILLISECONDS.toNanos(300));
      assertEquals(List.of(), receiveWithin("q", "g", Duration.ofSeconds(1)));
      eventually(Duration.ofSeconds(5), "handler finished", () -> consumer.handledCount() == 1);
    } finally {
      consumer.close();
    }
    assertEquals(List.of(1), deliveries, "handled exactly once");
    GroupStats stats = project.groupStats("q", "g");
    assertEquals(1, stats.consumedMessages(), "the handler's success was acked");
    assertEquals(0, stats.inFlightMessages());
  }

  @Test
  void extensionOptionsAreChecked() {
    ConsumerOptions d = ConsumerOptions.defaults();
    assertTrue(d.extendVisibility);
    assertEquals(Duration.ofSeconds(20), d.extensionPeriod, "two thirds of the server's 30 s");
    assertEquals(
        Duration.ofSeconds(10),
        ConsumerOptions.builder().visibilityTimeout(MIN_VISIBILITY).build().extensionPeriod);
    assertThrows(
        IllegalArgumentException.class,
        () ->
            ConsumerOptions.builder()
                .visibilityTimeout(MIN_VISIBILITY)
                .visibilityExtensionPeriod(MIN_VISIBILITY)
                .build());
    assertThrows(
        IllegalArgumentException.class,
        () -> ConsumerOptions.builder().visibilityExtensionPeriod(Duration.ZERO));
    ConsumerOptions off =
        ConsumerOptions.builder()
            .extendVisibility(false)
            .visibilityExtensionPeriod(Duration.ofMinutes(5))
            .build();
    assertFalse(off.extendVisibility, "a period is not checked when extension is off");
  }
}
