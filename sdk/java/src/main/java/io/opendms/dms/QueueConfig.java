package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;

/** Describes a queue to create. Only the name is required; the rest take the server's defaults. */
public final class QueueConfig {
  private final io.opendms.dms.v1.Queue proto;

  private QueueConfig(io.opendms.dms.v1.Queue proto) {
    this.proto = proto;
  }

  /**
   * Returns a builder for a queue of display name {@code name}: 1 to 64 characters of {@code
   * [A-Za-z0-9_-]}, unique in the project, not shaped like a UUID.
   */
  public static Builder builder(String name) {
    return new Builder(name);
  }

  /** A queue of that name with the server's defaults. */
  public static QueueConfig of(String name) {
    return builder(name).build();
  }

  io.opendms.dms.v1.Queue toProto() {
    return proto;
  }

  /** Builds a {@link QueueConfig}. */
  public static final class Builder {
    private final io.opendms.dms.v1.Queue.Builder q = io.opendms.dms.v1.Queue.newBuilder();

    private Builder(String name) {
      q.setDisplayName(Objects.requireNonNull(name, "name"));
    }

    /** Free text of at most 160 characters, without {@code <} or {@code >}. */
    public Builder description(String d) {
      q.setDescription(Objects.requireNonNull(d, "description"));
      return this;
    }

    /** How the queue orders and stores messages; {@link QueueMode#NORMAL} when not set. */
    public Builder mode(QueueMode m) {
      q.setMode(m.toProto());
      return this;
    }

    /** The number of partitions; 3 for normal queues when not set, always 1 for FIFO. */
    public Builder partitions(int n) {
      q.setPartitionCount(n);
      return this;
    }

    /** How long messages are kept; the server's default (and maximum, 72 h) when not set. */
    public Builder retention(Duration d) {
      q.setRetention(Protos.duration(d));
      return this;
    }

    /**
     * Enables dead letters: a message that failed {@code maxConsumeCount} times (1 to 100)
     * moves to its group's dead-letter queue.
     */
    public Builder deadLetters(int maxConsumeCount) {
      q.setDeadLetterEnabled(true).setMaxConsumeCount(maxConsumeCount);
      return this;
    }

    /** Returns the config. */
    public QueueConfig build() {
      return new QueueConfig(q.build());
    }
  }
}
