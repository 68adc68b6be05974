package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ExecutorService;

/** Configures a {@link Subscription}. */
public final class SubscribeOptions {
  private static final SubscribeOptions DEFAULTS = builder().build();

  final int maxOutstanding;
  final int concurrency;
  final ExecutorService executor;
  final Duration visibilityTimeout;
  final TagFilter tagFilter;
  final String consumerId;
  final int ackBatchSize;
  final Duration ackInterval;

  private SubscribeOptions(Builder b) {
    this.maxOutstanding = b.maxOutstanding;
    this.concurrency = b.concurrency;
    this.executor = b.executor;
    this.visibilityTimeout = b.visibilityTimeout;
    this.tagFilter = b.tagFilter;
    this.consumerId = b.consumerId;
    this.ackBatchSize = b.ackBatchSize;
    this.ackInterval = b.ackInterval;
  }

  /**
   * 100 messages outstanding, 10 handlers at once on the subscription's own threads, acks sent
   * every 50 ms or per 100.
   */
  public static SubscribeOptions defaults() {
    return DEFAULTS;
  }

  /** Returns a builder starting from the defaults. */
  public static Builder builder() {
    return new Builder();
  }

  /** Builds {@link SubscribeOptions}. */
  public static final class Builder {
    private int maxOutstanding = 100;
    private int concurrency = 10;
    private ExecutorService executor;
    private Duration visibilityTimeout;
    private TagFilter tagFilter;
    private String consumerId = "";
    private int ackBatchSize = 100;
    private Duration ackInterval = Duration.ofMillis(50);

    private Builder() {}

    /**
     * The credits: how many messages the server may have sent that are not handled yet
     * (waiting for a handler or running); 100 by default. Each handled message grants one
     * back. Every outstanding message is invisible to the group's other consumers, and must be
     * handled within the visibility timeout.
     */
    public Builder maxOutstanding(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxOutstanding must be positive, got " + n);
      }
      this.maxOutstanding = n;
      return this;
    }

    /**
     * How many handlers may run at once; 10 by default. With more than one, messages of a
     * partition may be handled out of order.
     */
    public Builder concurrency(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("concurrency must be positive, got " + n);
      }
      this.concurrency = n;
      return this;
    }

    /**
     * Runs the handlers on {@code executor} instead of the subscription's own pool of {@code
     * concurrency} threads; it is not shut down by the subscription, and {@code concurrency}
     * then does not apply.
     */
    public Builder executor(ExecutorService executor) {
      this.executor = Objects.requireNonNull(executor, "executor");
      return this;
    }

    /** Visibility timeout of delivered messages, 15 to 300 s; the server's 30 s when not set. */
    public Builder visibilityTimeout(Duration d) {
      this.visibilityTimeout = Objects.requireNonNull(d, "visibilityTimeout");
      return this;
    }

    /** Stream only messages whose tags match, with the group's one-filter rule. */
    public Builder tagFilter(TagFilter f) {
      this.tagFilter = Objects.requireNonNull(f, "tagFilter");
      return this;
    }

    /** Names this consumer instance, for diagnostics. */
    public Builder consumerId(String id) {
      this.consumerId = Objects.requireNonNull(id, "consumerId");
      return this;
    }

    /** Sends acks once this many are pending, 1 to 1000; 100 by default. */
    public Builder ackBatchSize(int n) {
      if (n < 1 || n > Limits.MAX_ACKS) {
        throw new IllegalArgumentException("ackBatchSize must be 1 to 1000, got " + n);
      }
      this.ackBatchSize = n;
      return this;
    }

    /** Sends pending acks and credits at least this often; 50 ms by default. */
    public Builder ackInterval(Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("ackInterval must be positive");
      }
      this.ackInterval = d;
      return this;
    }

    /** Returns the options. */
    public SubscribeOptions build() {
      return new SubscribeOptions(this);
    }
  }
}
