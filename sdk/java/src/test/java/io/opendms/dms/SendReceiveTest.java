package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SendReceiveTest extends DmsTestBase {
  private static final ReceiveOptions NOW = ReceiveOptions.builder().maxMessages(10).build();

  @Test
  void sendReceiveAckSuccess() {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    List<SendResult> sent =
        project.send(
            "q",
            List.of(
                Message.builder()
                    .body("first")
                    .attribute("region", "eu")
                    .attribute("count", 42)
                    .attribute("ratio", 0.5)
                    .attribute("urgent", true)
                    .tags("new", "big")
                    .orderingKey("customer-1")
                    .build(),
                Message.of("second"),
                Message.of(new byte[] {0, 1, 2})));
    assertEquals(3, sent.size());
    assertEquals(List.of(0L, 1L, 2L), sent.stream().map(SendResult::offset).toList());

    Instant before = Instant.now();
    List<ReceivedMessage> got = receiveN("q", "g", 3);
    assertEquals(List.of("first", "second"), bodies(got).subList(0, 2));
    ReceivedMessage first = got.get(0);
    assertEquals(sent.get(0).messageId(), first.messageId());
    assertEquals(Map.of("region", "eu", "count", 42L, "ratio", 0.5, "urgent", true), first.attributes());
    assertEquals(List.of("new", "big"), first.tags());
    assertEquals("customer-1", first.message().orderingKey());
    assertEquals(1, first.deliveryCount());
    assertTrue(first.publishTime() != null && !first.publishTime().isAfter(Instant.now()));
    assertTrue(first.visibleAt().isAfter(before.plusSeconds(29)), "default visibility is 30 s");
    assertTrue(first.deadLetter().isEmpty());
    assertEquals(List.of((byte) 0, (byte) 1, (byte) 2), List.of(got.get(2).body()[0], got.get(2).body()[1], got.get(2).body()[2]));

    List<AckResult> acks = project.ack("q", "g", got.stream().map(ReceivedMessage::success).toList());
    assertTrue(acks.stream().allMatch(AckResult::applied), acks.toString());
    AckResult again = project.ack("q", "g", first.success()).get(0);
    assertFalse(again.applied());
    assertEquals("RECEIPT_HANDLE_EXPIRED", again.reason(), "a settled delivery cannot be settled again");
    assertFalse(again.message().isEmpty());

    assertTrue(project.receive("q", "g", NOW).isEmpty());
    assertEquals(3, project.groupStats("q", "g").consumedMessages());
  }

  @Test
  void failComesBackAtOnceAndRedeliverLater() {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("fail"), Message.of("redeliver"));
    List<ReceivedMessage> got = receiveN("q", "g", 2);
    List<AckResult> acks = project.ack("q", "g", got.get(0).fail(), got.get(1).redeliver());
    assertTrue(acks.get(0).applied() && acks.get(1).applied(), acks.toString());

    List<ReceivedMessage> back = receiveN("q", "g", 1);
    assertEquals(List.of("fail"), bodies(back));
    assertEquals(2, back.get(0).deliveryCount());
    project.ack("q", "g", back.get(0).success());
    assertTrue(
        project.receive("q", "g", ReceiveOptions.builder().waitTime(Duration.ofSeconds(1)).build()).isEmpty(),
        "a redelivered message waits for the retry delay");
  }

  @Test
  void badHandlesAreReportedPerAck() {
    project.createQueue(QueueConfig.of("q"));
    project.createGroup("q", "g");
    project.send("q", Message.of("m"));
    ReceivedMessage m = receiveN("q", "g", 1).get(0);
    List<AckResult> results = project.ack("q", "g", new Ack("not-a-handle", AckStatus.SUCCESS), m.success());
    assertFalse(results.get(0).applied());
    assertEquals("RECEIPT_HANDLE_INVALID", results.get(0).reason());
    assertTrue(results.get(1).applied(), "one bad handle does not spoil the others");
  }

  @Test
  void tagFilters() {
    project.createQueue(QueueConfig.builder("q").mode(QueueMode.FIFO).build());
    project.createGroup("q", "red");
    project.send(
        "q",
        Message.builder().body("a").tags("red").build(),
        Message.builder().body("b").tags("blue").build(),
        Message.builder().body("c").tags("red", "blue").build());
    ReceiveOptions red = ReceiveOptions.builder().maxMessages(10).tagFilter(TagFilter.any("red")).build();
    assertEquals(List.of("a", "c"), bodies(project.receive("q", "red", red)));
    assertEquals(TagFilter.any("red"), project.getGroup("q", "red").tagFilter());

    DmsException conflict =
        assertThrows(
            DmsException.class,
            () -> project.receive("q", "red", ReceiveOptions.builder().tagFilter(TagFilter.all("blue")).build()));
    assertEquals("TAG_FILTER_CONFLICT", conflict.reason());
  }

  @Test
  void broadcastConsumersEachGetEveryMessage() {
    project.createQueue(QueueConfig.builder("q").mode(QueueMode.FIFO).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("m0"), Message.of("m1"));
    ReceiveOptions a =
        ReceiveOptions.builder()
            .maxMessages(10)
            .consumerId("a")
            .broadcast(new BroadcastOptions(BroadcastOptions.Start.EARLIEST, false))
            .build();
    ReceiveOptions b =
        ReceiveOptions.builder()
            .maxMessages(10)
            .consumerId("b")
            .broadcast(new BroadcastOptions(BroadcastOptions.Start.COMMITTED, true))
            .build();
    assertEquals(List.of("m0", "m1"), bodies(project.receive("q", "g", a)));
    assertEquals(List.of("m0", "m1"), bodies(project.receive("q", "g", b)));
    assertEquals(List.of("m0", "m1"), bodies(project.receive("q", "g", NOW)), "the group's own consumers are unaffected");
    assertTrue(project.receive("q", "g", b).isEmpty(), "b auto-acked what it got");

    DmsException noId =
        assertThrows(
            DmsException.class,
            () ->
                project.receive(
                    "q", "g",
                    ReceiveOptions.builder().broadcast(new BroadcastOptions(BroadcastOptions.Start.LATEST, true)).build()));
    assertEquals("CONSUMER_ID_REQUIRED", noId.reason());
  }
}
