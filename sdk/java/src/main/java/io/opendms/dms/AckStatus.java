package io.opendms.dms;

import dms.v1.MessageOuterClass;

/** How a delivery is settled. */
public enum AckStatus {
  /** The message was processed: the group never gets it again. */
  SUCCESS(MessageOuterClass.AckStatus.ACK_STATUS_SUCCESS),
  /**
   * The message was not processed: it becomes available to the group again at once, and the
   * attempt counts as failed (toward the queue's max consume count when dead letters are
   * enabled).
   */
  FAIL(MessageOuterClass.AckStatus.ACK_STATUS_FAIL),
  /**
   * The message was not processed and should be tried later: it becomes available to the group
   * again no sooner than the queue's retry delay (30 s), and the attempt counts as failed.
   */
  REDELIVER(MessageOuterClass.AckStatus.ACK_STATUS_REDELIVER);

  private final MessageOuterClass.AckStatus proto;

  AckStatus(MessageOuterClass.AckStatus proto) {
    this.proto = proto;
  }

  /** The status that settles a handler's outcome: null for success, or what it threw. */
  static AckStatus forOutcome(Throwable thrown) {
    if (thrown == null) {
      return SUCCESS;
    }
    return thrown instanceof RedeliverException ? REDELIVER : FAIL;
  }

  MessageOuterClass.AckStatus toProto() {
    return proto;
  }
}
