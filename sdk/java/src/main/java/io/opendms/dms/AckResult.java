package io.opendms.dms;


/**
 * The outcome of one ack.
 *
 * @param applied whether the ack took effect
 * @param reason when not applied, the stable reason: for example {@code RECEIPT_HANDLE_EXPIRED}
 *     when the visibility timeout had passed, the delivery was settled already or the message
 *     was delivered again; empty when applied
 * @param message when not applied, what went wrong, for people
 */
public record AckResult(boolean applied, String reason, String message) {
  static AckResult fromProto(io.opendms.dms.v1.AckResult r) {
    return new AckResult(r.getApplied(), r.getErrorReason(), r.getErrorMessage());
  }
}
