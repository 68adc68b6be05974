package io.opendms.dms;

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

  io.opendms.dms.v1.Ack toProto() {
    return io.opendms.dms.v1.Ack.newBuilder()
        .setReceiptHandle(receiptHandle)
        .setStatus(status.toProto())
        .build();
  }
}
