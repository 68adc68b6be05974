package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ExecutorService;

/** Configures a {@link Consumer}. */
public final class ConsumerOptions {
  private static final ConsumerOptions DEFAULTS = builder().build();

  final int concurrency;
  final ExecutorService executor;
  final int maxMessagesPerReceive;
  final Duration waitTime;
  final Duration visibilityTimeout;
  final String consumerId;
  final TagFilter tagFilter;
  final BroadcastOptions broadcast;
  final boolean extendVisibility;
  /** The extension period: two thirds of the visibility timeout unless set. */
  final Duration extensionPeriod;

  private ConsumerOptions(Builder b) {
    this.concurrency = b.concurrency;
    this.executor = b.executor;
    this.maxMessagesPerReceive = b.maxMessagesPerReceive;
    this.waitTime = b.waitTime;
    this.visibilityTimeout = b.visibilityTimeout;
    this.consumerId = b.consumerId;
    this.tagFilter = b.tagFilter;
    this.broadcast = b.broadcast;
    if (broadcast != null && consumerId.isEmpty()) {
      throw new IllegalArgumentException("a broadcast consumer needs a consumer id");
    }
    this.extendVisibility = b.extendVisibility;
    Duration timeout = effectiveVisibilityTimeout();
    this.extensionPeriod =
        b.extensionPeriod != null ? b.extensionPeriod : timeout.multipliedBy(2).dividedBy(3);
    if (extendVisibility && extensionPeriod.compareTo(timeout) >= 0) {
      throw new IllegalArgumentException(
          "visibilityExtensionPeriod ("
              + extensionPeriod
              + ") must be shorter than the visibility timeout ("
              + timeout
              + ")");
    }
  }

  /** The visibility timeout of the consumer's receives: the server's 30 s when not set. */
  Duration effectiveVisibilityTimeout() {
    return visibilityTimeout != null ? visibilityTimeout : ReceiveOptions.DEFAULT_VISIBILITY_TIMEOUT;
  }

  /**
   * 10 handlers at once on the consumer's own threads, long polls of 20 s, the server's
   * visibility timeout (30 s), extended while a handler runs.
   */
  public static ConsumerOptions defaults() {
    return DEFAULTS;
  }

  /** Returns a builder starting from the defaults. */
  public static Builder builder() {
    return new Builder();
  }

  ReceiveOptions receiveOptions(int maxMessages) {
    ReceiveOptions.Builder b =
        ReceiveOptions.builder()
            .maxMessages(maxMessages)
            .waitTime(waitTime)
            .consumerId(consumerId);
    if (visibilityTimeout != null) {
      b.visibilityTimeout(visibilityTimeout);
    }
    if (tagFilter != null) {
      b.tagFilter(tagFilter);
    }
    if (broadcast != null) {
      b.broadcast(broadcast);
    }
    return b.build();
  }

  /** Builds {@link ConsumerOptions}. */
  public static final class Builder {
    private int concurrency = 10;
    private ExecutorService executor;
    private int maxMessagesPerReceive = 100;
    private Duration waitTime = Duration.ofSeconds(20);
    private Duration visibilityTimeout;
    private String consumerId = "";
    private TagFilter tagFilter;
    private BroadcastOptions broadcast;
    private boolean extendVisibility = true;
    private Duration extensionPeriod;

    private Builder() {}

    /**
     * How many handlers may run at once; 10 by default. The consumer asks the server only for
     * as many messages as it has free handlers, so that messages do not wait invisible in the
     * client.
     */
    public Builder concurrency(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("concurrency must be positive, got " + n);
      }
      this.concurrency = n;
      return this;
    }

    /**
     * Runs the handlers on {@code executor} instead of the consumer's own pool of {@code
     * concurrency} threads. The consumer never runs more than {@code concurrency} handlers on
     * it at once and does not shut it down.
     */
    public Builder executor(ExecutorService executor) {
      this.executor = Objects.requireNonNull(executor, "executor");
      return this;
    }

    /** The most messages one receive asks for, 1 to 1000; 100 by default. */
    public Builder maxMessagesPerReceive(int n) {
      if (n < 1 || n > Limits.MAX_RECEIVE_MESSAGES) {
        throw new IllegalArgumentException("maxMessagesPerReceive must be 1 to 1000, got " + n);
      }
      this.maxMessagesPerReceive = n;
      return this;
    }

    /** How long each receive waits for a first message (long polling), 0 to 60 s; 20 s. */
    public Builder waitTime(Duration d) {
      this.waitTime = Objects.requireNonNull(d, "waitTime");
      return this;
    }

    /**
     * How long received messages stay invisible unless acked, 15 to 300 s; the server's
     * default (30 s) when not set. A handler that runs longer keeps its message as long as
     * the consumer extends its visibility (see {@link #extendVisibility(boolean)}); without
     * extension, handlers must finish within it.
     */
    public Builder visibilityTimeout(Duration d) {
      this.visibilityTimeout = Objects.requireNonNull(d, "visibilityTimeout");
      return this;
    }

    /** Names this consumer instance, for diagnostics and broadcast consumption. */
    public Builder consumerId(String id) {
      this.consumerId = Objects.requireNonNull(id, "consumerId");
      return this;
    }

    /** Receive only messages whose tags match. */
    public Builder tagFilter(TagFilter f) {
      this.tagFilter = Objects.requireNonNull(f, "tagFilter");
      return this;
    }

    /**
     * Consume every message of the queue by this consumer alone (needs a consumer id). With
     * auto-ack, handler outcomes are not acked: the server settled each message as delivered.
     */
    public Builder broadcast(BroadcastOptions b) {
      this.broadcast = Objects.requireNonNull(b, "broadcast");
      return this;
    }

    /**
     * Whether the consumer extends the visibility of messages whose handler runs long; on by
     * default. While a handler runs, the consumer calls {@link Project#changeVisibility} for
     * its message every {@linkplain #visibilityExtensionPeriod extension period} (two thirds
     * of the visibility timeout by default, counted from the receive), each time with the
     * consumer's visibility timeout from then on, so that the group does not get the message
     * again while it is being handled, however long that takes. It stops when the handler
     * returns. A failed extension is logged, not fatal: a call that fails is tried again
     * while the message is still invisible, and a delivery that can no longer be extended
     * (it expired) is left to its handler, whose ack will then not apply. Turned off, handlers
     * must finish within the visibility timeout. A broadcast consumer with auto-ack has
     * nothing to extend.
     */
    public Builder extendVisibility(boolean on) {
      this.extendVisibility = on;
      return this;
    }

    /**
     * How often the visibility of a message whose handler still runs is extended, counted
     * from the receive; two thirds of the visibility timeout by default (20 s of the server's
     * 30 s). It must be shorter than the visibility timeout, with room for the call: the
     * default leaves a third.
     */
    public Builder visibilityExtensionPeriod(Duration d) {
      Objects.requireNonNull(d, "visibilityExtensionPeriod");
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("visibilityExtensionPeriod must be positive, got " + d);
      }
      this.extensionPeriod = d;
      return this;
    }

    /**
     * Returns the options.
     *
     * @throws IllegalArgumentException if the extension period is not shorter than the
     *     visibility timeout, or a broadcast consumer has no consumer id
     */
    public ConsumerOptions build() {
      return new ConsumerOptions(this);
    }
  }
}
