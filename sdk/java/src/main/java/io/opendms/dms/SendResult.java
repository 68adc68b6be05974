package io.opendms.dms;

import java.time.Instant;

/**
 * Where a sent message was stored.
 *
 * @param messageId the id the server assigned
 * @param partition the partition that holds the message
 * @param offset the message's offset within the partition
 * @param scheduleId for a scheduled message (sent with a delay or deliver time), the id that
 *     cancels or reschedules it; empty otherwise
 * @param deliverTime for a scheduled message, when it becomes visible; null otherwise
 */
public record SendResult(
    String messageId, int partition, long offset, String scheduleId, Instant deliverTime) {
  /** A result of a message that is not scheduled. */
  public SendResult(String messageId, int partition, long offset) {
    this(messageId, partition, offset, "", null);
  }
}
