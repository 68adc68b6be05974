package io.opendms.dms;


/** How a delivery is settled. */
public enum AckStatus {
  /** The message was processed: the group never gets it again. */
  SUCCESS(io.opendms.dms.v1.AckStatus.ACK_STATUS_SUCCESS),
  /**
   * The message was not processed: it becomes available to the group again at once, and the
   * attempt counts as failed (toward the queue's max consume count when dead letters are
   * enabled).
   */
  FAIL(io.opendms.dms.v1.AckStatus.ACK_STATUS_FAIL),
  /**
   * The message was not processed and should be tried later: it becomes available to the group
   * again no sooner than the queue's retry delay (30 s), and the attempt counts as failed.
   */
  REDELIVER(io.opendms.dms.v1.AckStatus.ACK_STATUS_REDELIVER);

  private final io.opendms.dms.v1.AckStatus proto;

  AckStatus(io.opendms.dms.v1.AckStatus proto) {
    this.proto = proto;
  }

  /** The status that settles a handler's outcome: null for success, or what it threw. */
  static AckStatus forOutcome(Throwable thrown) {
    if (thrown == null) {
      return SUCCESS;
    }
    return thrown instanceof RedeliverException ? REDELIVER : FAIL;
  }

  io.opendms.dms.v1.AckStatus toProto() {
    return proto;
  }
}
