package io.opendms.dms;

import java.time.Instant;

/**
 * Why a message became a dead letter.
 *
 * @param failureCount how many times consuming the message failed
 * @param lastFailureReason the last failure: {@code FAILED_BY_CONSUMER}, {@code
 *     VISIBILITY_TIMEOUT} or {@code REDELIVER_REQUESTED}
 * @param deadLetterTime when the message became a dead letter
 * @param sourcePartition the partition of the queue that holds the original message
 * @param sourceOffset the original message's offset in that partition
 */
public record DeadLetterInfo(
    int failureCount,
    String lastFailureReason,
    Instant deadLetterTime,
    int sourcePartition,
    long sourceOffset) {
  static DeadLetterInfo fromProto(io.opendms.dms.v1.DeadLetterInfo d) {
    return new DeadLetterInfo(
        d.getFailureCount(),
        d.getLastFailureReason(),
        Protos.instant(d.hasDeadLetterTime(), d.getDeadLetterTime()),
        d.getSourcePartition(),
        d.getSourceOffset());
  }
}
