package io.opendms.dms;

import java.time.Instant;

/**
 * A rescheduled message.
 *
 * @param scheduleId its new schedule id; the old one is no longer valid
 * @param messageId the message's id
 * @param deliverTime when it becomes visible now
 */
public record RescheduleResult(String scheduleId, String messageId, Instant deliverTime) {}
