package io.opendms.dms;

import dms.v1.MessageOuterClass;
import java.util.Objects;

/**
 * Settles one delivery. {@link ReceivedMessage#success()}, {@link ReceivedMessage#fail()} and
 * {@link ReceivedMessage#redeliver()} build them.
 *
 * @param receiptHandle the handle of the delivery
 * @param status the outcome
 */
public record Ack(String receiptHandle, AckStatus status) {
  public Ack {
    Objects.requireNonNull(receiptHandle, "receiptHandle");
    Objects.requireNonNull(status, "status");
  }

  MessageOuterClass.Ack toProto() {
    return MessageOuterClass.Ack.newBuilder()
        .setReceiptHandle(receiptHandle)
        .setStatus(status.toProto())
        .build();
  }
}
