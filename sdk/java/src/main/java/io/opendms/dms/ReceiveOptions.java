package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;

/**
 * The parameters of one receive. {@link #defaults()} asks for up to 10 messages without
 * waiting.
 */
public final class ReceiveOptions {
  private static final ReceiveOptions DEFAULTS = builder().build();

  final int maxMessages;
  final Duration waitTime;
  final Duration visibilityTimeout;
  final String consumerId;
  final TagFilter tagFilter;
  final BroadcastOptions broadcast;

  private ReceiveOptions(Builder b) {
    this.maxMessages = b.maxMessages;
    this.waitTime = b.waitTime;
    this.visibilityTimeout = b.visibilityTimeout;
    this.consumerId = b.consumerId;
    this.tagFilter = b.tagFilter;
    this.broadcast = b.broadcast;
  }

  /** Up to 10 messages, no waiting, the server's visibility timeout (30 s). */
  public static ReceiveOptions defaults() {
    return DEFAULTS;
  }

  /** Returns a builder starting from the defaults. */
  public static Builder builder() {
    return new Builder();
  }

  /** The visibility timeout the server applies to this receive. */
  Duration effectiveVisibilityTimeout() {
    return visibilityTimeout == null ? DEFAULT_VISIBILITY_TIMEOUT : visibilityTimeout;
  }

  /** The server's visibility timeout when a receive names none. */
  static final Duration DEFAULT_VISIBILITY_TIMEOUT = Duration.ofSeconds(30);

  /** Builds {@link ReceiveOptions}. */
  public static final class Builder {
    private int maxMessages;
    private Duration waitTime = Duration.ZERO;
    private Duration visibilityTimeout;
    private String consumerId = "";
    private TagFilter tagFilter;
    private BroadcastOptions broadcast;

    private Builder() {}

    /**
     * The most messages returned: 1 to {@link Limits#MAX_RECEIVE_MESSAGES}; the server's
     * default (10) when 0. The server also limits a response to about 8 MiB.
     */
    public Builder maxMessages(int n) {
      this.maxMessages = n;
      return this;
    }

    /**
     * How long the server waits for a first message when none is available (long polling): 0
     * to 60 s. With 0 the call answers at once, possibly with no message.
     */
    public Builder waitTime(Duration d) {
      this.waitTime = Objects.requireNonNull(d, "waitTime");
      return this;
    }

    /**
     * How long received messages stay invisible to the group unless settled: 15 to 300 s; the
     * server's default (30 s) when not set.
     */
    public Builder visibilityTimeout(Duration d) {
      this.visibilityTimeout = Objects.requireNonNull(d, "visibilityTimeout");
      return this;
    }

    /**
     * Names the consumer instance: for diagnostics, and required for broadcast receives, where
     * the server keeps the position of each consumer id.
     */
    public Builder consumerId(String id) {
      this.consumerId = Objects.requireNonNull(id, "consumerId");
      return this;
    }

    /** Receive only messages whose tags match; see {@link TagFilter} for the group's rule. */
    public Builder tagFilter(TagFilter f) {
      this.tagFilter = Objects.requireNonNull(f, "tagFilter");
      return this;
    }

    /** Makes the receive a broadcast receive; needs a {@link #consumerId(String)}. */
    public Builder broadcast(BroadcastOptions b) {
      this.broadcast = Objects.requireNonNull(b, "broadcast");
      return this;
    }

    /** Returns the options. */
    public ReceiveOptions build() {
      return new ReceiveOptions(this);
    }
  }
}
