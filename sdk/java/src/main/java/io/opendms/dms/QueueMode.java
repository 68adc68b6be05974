package io.opendms.dms;

import dms.v1.QueueOuterClass;

/** How a queue orders and stores its messages. */
public enum QueueMode {
  /**
   * Messages are spread over several partitions; order is kept within a partition and
   * consumption scales with partitions and consumers. The server's default.
   */
  NORMAL(QueueOuterClass.QueueMode.QUEUE_MODE_NORMAL),
  /**
   * One strict order for the whole queue: a group is not given message n+1 while message n is
   * in flight (per ordering key).
   */
  FIFO(QueueOuterClass.QueueMode.QUEUE_MODE_FIFO),
  /** For Kafka clients; writes are flushed to disk before they are acknowledged. */
  KAFKA_HA(QueueOuterClass.QueueMode.QUEUE_MODE_KAFKA_HA),
  /** For Kafka clients; writes are acknowledged once written and flushed shortly after. */
  KAFKA_HT(QueueOuterClass.QueueMode.QUEUE_MODE_KAFKA_HT),
  /** For AMQP clients. */
  AMQP(QueueOuterClass.QueueMode.QUEUE_MODE_AMQP);

  private final QueueOuterClass.QueueMode proto;

  QueueMode(QueueOuterClass.QueueMode proto) {
    this.proto = proto;
  }

  QueueOuterClass.QueueMode toProto() {
    return proto;
  }

  static QueueMode fromProto(QueueOuterClass.QueueMode m) {
    for (QueueMode mode : values()) {
      if (mode.proto == m) {
        return mode;
      }
    }
    return NORMAL; // UNSPECIFIED, or a mode newer than this client
  }
}
