package io.opendms.dms;

/**
 * Where a sent message was stored.
 *
 * @param messageId the id the server assigned
 * @param partition the partition that holds the message
 * @param offset the message's offset within the partition
 */
public record SendResult(String messageId, int partition, long offset) {}
