package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;

/** Configures a {@link Producer}. */
public final class ProducerOptions {
  private static final ProducerOptions DEFAULTS = builder().build();

  final Duration linger;
  final int maxBatchMessages;
  final int maxBatchBytes;
  final int maxInFlight;
  final long maxBufferedBytes;
  final Duration sendTimeout;
  final RetryPolicy retryPolicy;

  private ProducerOptions(Builder b) {
    this.linger = b.linger;
    this.maxBatchMessages = b.maxBatchMessages;
    this.maxBatchBytes = b.maxBatchBytes;
    this.maxInFlight = b.maxInFlight;
    this.maxBufferedBytes = Math.max(b.maxBufferedBytes, b.maxBatchBytes);
    this.sendTimeout = b.sendTimeout;
    this.retryPolicy = b.retryPolicy;
  }

  /**
   * Linger 5 ms, batches of up to 1000 messages and 8 MiB, 4 calls in flight, 64 MiB buffered,
   * 30 s per call, {@link RetryPolicy#DEFAULT}.
   */
  public static ProducerOptions defaults() {
    return DEFAULTS;
  }

  /** Returns a builder starting from the defaults. */
  public static Builder builder() {
    return new Builder();
  }

  /** Builds {@link ProducerOptions}. */
  public static final class Builder {
    private Duration linger = Duration.ofMillis(5);
    private int maxBatchMessages = Limits.MAX_BATCH_MESSAGES;
    private int maxBatchBytes = Limits.MAX_BATCH_BYTES;
    private int maxInFlight = 4;
    private long maxBufferedBytes = 64L << 20;
    private Duration sendTimeout = Duration.ofSeconds(30);
    private RetryPolicy retryPolicy = RetryPolicy.DEFAULT;

    private Builder() {}

    /**
     * How long a batch waits for more messages once it has its first, while a call slot is
     * free; 5 ms by default. Zero sends whenever a slot is free.
     */
    public Builder linger(Duration d) {
      this.linger = Objects.requireNonNull(d, "linger");
      return this;
    }

    /** The most messages per call: 1 to {@link Limits#MAX_BATCH_MESSAGES} (the default). */
    public Builder maxBatchMessages(int n) {
      this.maxBatchMessages = clamp("maxBatchMessages", n, Limits.MAX_BATCH_MESSAGES);
      return this;
    }

    /**
     * The most bytes of messages per call, as {@link Message#size()} counts them: 1 to {@link
     * Limits#MAX_BATCH_BYTES} (the default). A larger message is sent alone.
     */
    public Builder maxBatchBytes(int n) {
      this.maxBatchBytes = clamp("maxBatchBytes", n, Limits.MAX_BATCH_BYTES);
      return this;
    }

    /** How many calls may run at once; 4 by default. */
    public Builder maxInFlight(int n) {
      this.maxInFlight = clamp("maxInFlight", n, Integer.MAX_VALUE);
      return this;
    }

    /**
     * Bounds the memory held by messages handed over and not yet settled; 64 MiB by default.
     * {@link Producer#sendAsync} blocks while the buffer is full.
     */
    public Builder maxBufferedBytes(long n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxBufferedBytes must be positive");
      }
      this.maxBufferedBytes = n;
      return this;
    }

    /** The deadline of each call; 30 s by default. A call that times out is retried. */
    public Builder sendTimeout(Duration d) {
      this.sendTimeout = Objects.requireNonNull(d, "sendTimeout");
      return this;
    }

    /** How calls failing with {@code UNAVAILABLE} or {@code DEADLINE_EXCEEDED} are retried. */
    public Builder retryPolicy(RetryPolicy p) {
      this.retryPolicy = Objects.requireNonNull(p, "retryPolicy");
      return this;
    }

    /** Returns the options. */
    public ProducerOptions build() {
      return new ProducerOptions(this);
    }

    private static int clamp(String what, int n, int max) {
      if (n < 1 || n > max) {
        throw new IllegalArgumentException(what + " must be 1 to " + max + ", got " + n);
      }
      return n;
    }
  }
}
