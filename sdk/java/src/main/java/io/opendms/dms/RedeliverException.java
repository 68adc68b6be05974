package io.opendms.dms;

/**
 * Thrown by a {@link MessageHandler} to have the message delivered again after the queue's
 * retry delay (30 s) instead of at once: the delivery is acked as {@link AckStatus#REDELIVER}.
 * The attempt counts as failed.
 */
public class RedeliverException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** A redelivery request with a message saying why, for logs. */
  public RedeliverException(String message) {
    super(message);
  }

  /** A redelivery request caused by {@code cause}. */
  public RedeliverException(String message, Throwable cause) {
    super(message, cause);
  }
}
