package io.opendms.dms;


/**
 * The outcome of a redrive for one dead letter.
 *
 * @param messageId the message id
 * @param redriven whether the message is available to the group again
 * @param reason when not redriven, the stable reason, such as {@code MESSAGE_EXPIRED}
 * @param message when not redriven, what went wrong, for people
 */
public record RedriveResult(String messageId, boolean redriven, String reason, String message) {
  static RedriveResult fromProto(io.opendms.dms.v1.RedriveResult r) {
    return new RedriveResult(
        r.getMessageId(), r.getRedriven(), r.getErrorReason(), r.getErrorMessage());
  }
}
