package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SeekTest extends DmsTestBase {

  @Test
  void seekMovesTheGroup() throws Exception {
    project.createQueue(QueueConfig.builder("q").mode(QueueMode.FIFO).build());
    project.createGroup("q", "g");
    project.send("q", Message.of("m0"), Message.of("m1"));
    Thread.sleep(20);
    Instant middle = Instant.now();
    Thread.sleep(20);
    project.send("q", Message.of("m2"), Message.of("m3"));
    List<ReceivedMessage> all = receiveN("q", "g", 4);
    project.ack("q", "g", all.stream().map(ReceivedMessage::success).toList());
    ReceiveOptions now = ReceiveOptions.builder().maxMessages(10).build();
    assertTrue(project.receive("q", "g", now).isEmpty());

    assertEquals(Map.of(0, 0L), project.seekToEarliest("q", "g"));
    assertEquals(List.of("m0", "m1", "m2", "m3"), bodies(receiveN("q", "g", 4)), "acked messages come again");

    assertEquals(Map.of(0, 4L), project.seekToLatest("q", "g"));
    assertTrue(project.receive("q", "g", now).isEmpty(), "in-flight deliveries are forgotten too");

    assertEquals(Map.of(0, 2L), project.seekToTime("q", "g", middle));
    assertEquals(List.of("m2", "m3"), bodies(receiveN("q", "g", 2)));

    assertEquals(Map.of(0, 3L), project.seekToOffsets("q", "g", Map.of(0, 3L)));
    assertEquals(List.of("m3"), bodies(receiveN("q", "g", 1)));

    DmsException bad = assertThrows(DmsException.class, () -> project.seekToOffsets("q", "g", Map.of(5, 0L)));
    assertEquals("SEEK_TARGET_INVALID", bad.reason());
  }
}
