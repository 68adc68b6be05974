package io.opendms.dms;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * One delivery of a message to a consumer group. Settle it with an ack ({@link #success()},
 * {@link #fail()} or {@link #redeliver()}) before {@link #visibleAt()}, or the group gets it
 * again.
 */
public final class ReceivedMessage {
  private final io.opendms.dms.v1.ReceivedMessage proto;
  private final Message message;
  private final Instant visibleAt;

  private ReceivedMessage(io.opendms.dms.v1.ReceivedMessage proto, Instant visibleAt) {
    this.proto = proto;
    this.message = Message.fromProto(proto.getMessage());
    this.visibleAt = visibleAt;
  }

  static ReceivedMessage fromProto(io.opendms.dms.v1.ReceivedMessage proto, Instant visibleAt) {
    return new ReceivedMessage(proto, visibleAt);
  }

  /** The message id assigned when it was sent. */
  public String messageId() {
    return proto.getMessageId();
  }

  /**
   * The opaque token that settles this delivery; valid only for the group it was issued to and
   * only for this delivery.
   */
  public String receiptHandle() {
    return proto.getReceiptHandle();
  }

  /** The message as it was sent. */
  public Message message() {
    return message;
  }

  /** The body, a fresh copy. */
  public byte[] body() {
    return message.body();
  }

  /** The body decoded as UTF-8. */
  public String bodyAsString() {
    return message.bodyAsString();
  }

  /** The attributes. */
  public Map<String, Object> attributes() {
    return message.attributes();
  }

  /** The tags. */
  public List<String> tags() {
    return message.tags();
  }

  /** The partition that holds the message (of the dead-letter queue, for a dead letter). */
  public int partition() {
    return proto.getPartition();
  }

  /** The message's offset within the partition. */
  public long offset() {
    return proto.getOffset();
  }

  /** When the message was stored. */
  public Instant publishTime() {
    return Protos.instant(proto.hasPublishTime(), proto.getPublishTime());
  }

  /** How many times the message has been delivered to the group, this delivery included. */
  public int deliveryCount() {
    return proto.getDeliveryCount();
  }

  /**
   * When, unless settled, the message becomes available to the group again, as this client
   * estimates it: the receive's start plus the visibility timeout (an estimate that errs early).
   */
  public Instant visibleAt() {
    return visibleAt;
  }

  /** Why the message became a dead letter; present on dead letters only. */
  public Optional<DeadLetterInfo> deadLetter() {
    return proto.hasDeadLetter()
        ? Optional.of(DeadLetterInfo.fromProto(proto.getDeadLetter()))
        : Optional.empty();
  }

  /** The ack that settles this delivery as processed. */
  public Ack success() {
    return new Ack(receiptHandle(), AckStatus.SUCCESS);
  }

  /** The ack that settles this delivery as failed: the message is available again at once. */
  public Ack fail() {
    return new Ack(receiptHandle(), AckStatus.FAIL);
  }

  /** The ack that asks for the message again after the queue's retry delay. */
  public Ack redeliver() {
    return new Ack(receiptHandle(), AckStatus.REDELIVER);
  }

  @Override
  public String toString() {
    return "ReceivedMessage{id=" + messageId() + ", partition=" + partition() + ", offset="
        + offset() + ", deliveryCount=" + deliveryCount() + "}";
  }
}
