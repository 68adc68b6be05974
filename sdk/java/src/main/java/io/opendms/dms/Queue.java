package io.opendms.dms;

import java.time.Duration;
import java.time.Instant;

/**
 * A queue as the server describes it.
 *
 * @param name the resource name, {@code projects/{project}/queues/{id}}
 * @param id the UUID assigned at creation
 * @param displayName the name given at creation
 * @param description the description
 * @param mode how the queue orders and stores messages
 * @param partitions the number of partitions
 * @param retention how long messages are kept
 * @param deadLetters whether failed messages move to dead-letter queues
 * @param maxConsumeCount failed attempts after which a message becomes a dead letter
 * @param createTime when the queue was created
 * @param messageCount messages currently retained
 * @param groupCount consumer groups of the queue
 * @param maxMessageBytes the largest accepted message (body plus attributes)
 */
public record Queue(
    String name,
    String id,
    String displayName,
    String description,
    QueueMode mode,
    int partitions,
    Duration retention,
    boolean deadLetters,
    int maxConsumeCount,
    Instant createTime,
    long messageCount,
    int groupCount,
    int maxMessageBytes) {
  static Queue fromProto(io.opendms.dms.v1.Queue q) {
    return new Queue(
        q.getName(),
        q.getId(),
        q.getDisplayName(),
        q.getDescription(),
        QueueMode.fromProto(q.getMode()),
        q.getPartitionCount(),
        q.hasRetention() ? Protos.duration(q.getRetention()) : Duration.ZERO,
        q.getDeadLetterEnabled(),
        q.getMaxConsumeCount(),
        Protos.instant(q.hasCreateTime(), q.getCreateTime()),
        q.getMessageCount(),
        q.getGroupCount(),
        q.getMaxMessageBytes());
  }
}
