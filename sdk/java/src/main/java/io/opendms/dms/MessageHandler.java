package io.opendms.dms;

/**
 * Processes one message for a {@link Consumer} or a {@link Subscription}. Its outcome settles
 * the delivery:
 *
 * <ul>
 *   <li>returning normally acks it as {@link AckStatus#SUCCESS}: the group never gets the
 *       message again;
 *   <li>throwing {@link RedeliverException} acks it as {@link AckStatus#REDELIVER}: the group
 *       gets it again after the queue's retry delay (30 s);
 *   <li>throwing anything else acks it as {@link AckStatus#FAIL}: the group gets it again at
 *       once, with a delivery count one higher.
 * </ul>
 *
 * <p>Both failures count toward the queue's max consume count when dead letters are enabled.
 * The delivery must be settled before its visibility timeout passes, after which the ack can no
 * longer be applied and the group gets the message again. A {@link Consumer} extends the
 * visibility of a message while its handler runs (see {@link
 * ConsumerOptions.Builder#extendVisibility(boolean)}), so its handlers may take longer; a {@link
 * Subscription} does not, so its handlers must finish before the message's {@link
 * ReceivedMessage#visibleAt()} (give a handler that may take long a longer visibility timeout).
 * Handlers run concurrently (see the options' concurrency) and must be thread-safe.
 */
@FunctionalInterface
public interface MessageHandler {
  /** Processes {@code message}. */
  void handle(ReceivedMessage message) throws Exception;
}
