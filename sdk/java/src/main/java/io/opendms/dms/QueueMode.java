package io.opendms.dms;


/** How a queue orders and stores its messages. */
public enum QueueMode {
  /**
   * Messages are spread over several partitions; order is kept within a partition and
   * consumption scales with partitions and consumers. The server's default.
   */
  NORMAL(io.opendms.dms.v1.QueueMode.QUEUE_MODE_NORMAL),
  /**
   * One strict order for the whole queue: a group is not given message n+1 while message n is
   * in flight (per ordering key).
   */
  FIFO(io.opendms.dms.v1.QueueMode.QUEUE_MODE_FIFO),
  /** For Kafka clients; writes are flushed to disk before they are acknowledged. */
  KAFKA_HA(io.opendms.dms.v1.QueueMode.QUEUE_MODE_KAFKA_HA),
  /** For Kafka clients; writes are acknowledged once written and flushed shortly after. */
  KAFKA_HT(io.opendms.dms.v1.QueueMode.QUEUE_MODE_KAFKA_HT),
  /** For AMQP clients. */
  AMQP(io.opendms.dms.v1.QueueMode.QUEUE_MODE_AMQP);

  private final io.opendms.dms.v1.QueueMode proto;

  QueueMode(io.opendms.dms.v1.QueueMode proto) {
    this.proto = proto;
  }

  io.opendms.dms.v1.QueueMode toProto() {
    return proto;
  }

  static QueueMode fromProto(io.opendms.dms.v1.QueueMode m) {
    for (QueueMode mode : values()) {
      if (mode.proto == m) {
        return mode;
      }
    }
    return NORMAL; // UNSPECIFIED, or a mode newer than this client
  }
}
