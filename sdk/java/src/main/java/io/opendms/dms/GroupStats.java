package io.opendms.dms;

import io.opendms.dms.v1.ConsumerGroupStats;
import java.time.Duration;

/**
 * What a consumer group has done with its queue.
 *
 * @param producedMessages messages currently retained in the queue
 * @param consumedMessages retained messages the group acknowledged successfully
 * @param availableMessages retained messages the group has not acknowledged, in flight or not
 * @param inFlightMessages messages delivered to a consumer and not yet acknowledged
 * @param producedDeadLetters messages of the group that became dead letters, still retained
 * @param availableDeadLetters dead letters not acknowledged yet
 * @param oldestUnackedAge age of the oldest message the group has not acknowledged; zero when
 *     there is none
 */
public record GroupStats(
    long producedMessages,
    long consumedMessages,
    long availableMessages,
    long inFlightMessages,
    long producedDeadLetters,
    long availableDeadLetters,
    Duration oldestUnackedAge) {
  static GroupStats fromProto(ConsumerGroupStats s) {
    return new GroupStats(
        s.getProducedMessages(),
        s.getConsumedMessages(),
        s.getAvailableMessages(),
        s.getInFlightMessages(),
        s.getProducedDeadLetters(),
        s.getAvailableDeadLetters(),
        s.hasOldestUnackedAge() ? Protos.duration(s.getOldestUnackedAge()) : Duration.ZERO);
  }
}
