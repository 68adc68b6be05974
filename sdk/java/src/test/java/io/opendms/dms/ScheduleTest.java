package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Scheduled messages: sent with a delay or a deliver time, cancelled and rescheduled. */
class ScheduleTest extends DmsTestBase {
  @Test
  void delayCancelAndReschedule() {
    project.createQueue(QueueConfig.builder("q").partitions(1).build());
    project.createGroup("q", "g");
    Instant later = Instant.now().plus(Duration.ofHours(1));
    List<SendResult> sent =
        project.send(
            "q",
            Message.builder().body("cancelled").delay(Duration.ofHours(1)).build(),
            Message.builder().body("rescheduled").deliverTime(later).build(),
            Message.of("now"));
    SendResult cancelled = sent.get(0), rescheduled = sent.get(1);
    assertFalse(cancelled.scheduleId().isEmpty());
    assertFalse(rescheduled.scheduleId().isEmpty());
    assertEquals("", sent.get(2).scheduleId());
    assertTrue(Duration.between(later, rescheduled.deliverTime()).abs().toMillis() < 1000);
    assertEquals("now", receiveN("q", "g", 1).get(0).message().bodyAsString());

    List<CancelResult> results =
        project.cancelScheduledMessages("q", cancelled.scheduleId());
    assertTrue(results.get(0).cancelled());
    results = project.cancelScheduledMessages("q", List.of(cancelled.scheduleId(), "not-an-id"));
    assertFalse(results.get(0).cancelled());
    assertEquals("SCHEDULE_NOT_FOUND", results.get(0).reason());
    assertEquals("SCHEDULE_ID_INVALID", results.get(1).reason());

    Instant at = Instant.now().plus(Duration.ofHours(2));
    RescheduleResult moved = project.rescheduleMessage("q", rescheduled.scheduleId(), at);
    assertNotEquals(rescheduled.scheduleId(), moved.scheduleId());
    assertEquals(rescheduled.messageId(), moved.messageId());
    assertTrue(Duration.between(at, moved.deliverTime()).abs().toMillis() < 1000);
    moved = project.rescheduleMessage("q", moved.scheduleId(), Duration.ZERO);
    assertEquals("rescheduled", receiveN("q", "g", 1).get(0).message().bodyAsString());
  }
}
