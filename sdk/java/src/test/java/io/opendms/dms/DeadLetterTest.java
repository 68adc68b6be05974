package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class DeadLetterTest extends DmsTestBase {
  private static final ReceiveOptions WAIT =
      ReceiveOptions.builder().maxMessages(10).waitTime(Duration.ofSeconds(5)).build();

  @Test
  void failOnceReceiveTheDeadLetterRedriveAndReceiveAgain() {
    project.createQueue(QueueConfig.builder("q").partitions(1).deadLetters(1).build());
    project.createGroup("q", "g");
    SendResult sent = project.send("q", Message.of("poison")).get(0);

    ReceivedMessage m = receiveN("q", "g", 1).get(0);
    assertTrue(project.ack("q", "g", m.fail()).get(0).applied());

    List<ReceivedMessage> dead = project.receiveDeadLetters("q", "g", WAIT);
    assertEquals(List.of("poison"), bodies(dead));
    ReceivedMessage d = dead.get(0);
    assertEquals(sent.messageId(), d.messageId());
    DeadLetterInfo info = d.deadLetter().orElseThrow();
    assertEquals(1, info.failureCount());
    assertEquals("FAILED_BY_CONSUMER", info.lastFailureReason());
    assertEquals(sent.offset(), info.sourceOffset());
    assertEquals(sent.partition(), info.sourcePartition());
    assertEquals(1, project.groupStats("q", "g").producedDeadLetters());
    assertTrue(
        project.receive("q", "g", ReceiveOptions.builder().waitTime(Duration.ofMillis(500)).build()).isEmpty(),
        "a dead letter is out of the group's way");

    // In flight as a dead letter it is not redriven; failing it makes it available again.
    assertTrue(project.ackDeadLetters("q", "g", d.fail()).get(0).applied());
    List<RedriveResult> redriven = project.redriveDeadLetters("q", "g", RedriveOptions.messageIds(sent.messageId()));
    assertEquals(1, redriven.size(), redriven.toString());
    assertEquals(sent.messageId(), redriven.get(0).messageId());
    assertTrue(redriven.get(0).redriven(), redriven.toString());

    ReceivedMessage back = receiveN("q", "g", 1).get(0);
    assertEquals("poison", back.bodyAsString());
    assertEquals(1, back.deliveryCount(), "a redriven message starts a fresh count");
    assertTrue(project.ack("q", "g", back.success()).get(0).applied());
    assertTrue(project.receiveDeadLetters("q", "g", ReceiveOptions.defaults()).isEmpty());
  }

  @Test
  void anAckedDeadLetterIsGone() {
    project.createQueue(QueueConfig.builder("q").partitions(1).deadLetters(1).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("x"));
    project.ack("q", "g", receiveN("q", "g", 1).get(0).fail());
    ReceivedMessage d = project.receiveDeadLetters("q", "g", WAIT).get(0);
    assertTrue(project.ackDeadLetters("q", "g", d.success()).get(0).applied());
    assertTrue(project.redriveDeadLetters("q", "g", RedriveOptions.all()).isEmpty());
    assertEquals(0, project.groupStats("q", "g").availableDeadLetters());
  }

  @Test
  void queuesWithoutDeadLettersSaySo() {
    project.createQueue(QueueConfig.of("q"));
    project.createGroup("q", "g");
    DmsException e =
        org.junit.jupiter.api.Assertions.assertThrows(
            DmsException.class, () -> project.redriveDeadLetters("q", "g", RedriveOptions.all()));
    assertEquals("DEAD_LETTERS_DISABLED", e.reason());
  }
}
