package io.opendms.dms;

/**
 * The outcome of cancelling one scheduled message.
 *
 * @param scheduleId the schedule id it is about
 * @param cancelled whether it was cancelled
 * @param reason why not, when it was not: {@code SCHEDULE_NOT_FOUND}, {@code
 *     SCHEDULE_ALREADY_RELEASED} or {@code SCHEDULE_ID_INVALID}; empty otherwise
 * @param message the server's explanation, for people
 */
public record CancelResult(String scheduleId, boolean cancelled, String reason, String message) {}
