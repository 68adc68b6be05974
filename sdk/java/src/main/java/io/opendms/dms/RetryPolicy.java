package io.opendms.dms;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;

/**
 * How often and how patiently a failed call is repeated.
 *
 * @param maxAttempts the first call included: 1 means no retry
 * @param initialBackoff the pause before the first retry; it doubles with every retry up to
 *     {@code maxBackoff}, and each pause is jittered to between half and all of its value
 * @param maxBackoff the longest pause
 */
public record RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff) {
  /** Up to 10 calls, with pauses from 100 ms doubling up to 2 s: about 10 s of retries. */
  public static final RetryPolicy DEFAULT =
      new RetryPolicy(10, Duration.ofMillis(100), Duration.ofSeconds(2));

  /** A single call, never repeated. */
  public static final RetryPolicy NONE = new RetryPolicy(1, Duration.ZERO, Duration.ZERO);

  public RetryPolicy {
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be at least 1, got " + maxAttempts);
    }
    Objects.requireNonNull(initialBackoff, "initialBackoff");
    Objects.requireNonNull(maxBackoff, "maxBackoff");
  }

  /** The pause before retry number {@code retry} (1 for the first), jittered. */
  Duration backoff(int retry) {
    long nanos = initialBackoff.toNanos();
    long max = maxBackoff.toNanos();
    for (int i = 1; i < retry && nanos < max; i++) {
      nanos *= 2;
    }
    nanos = Math.min(nanos, max);
    if (nanos <= 1) {
      return Duration.ofNanos(nanos);
    }
    // Between half and all of it, so that many clients do not retry in step.
    return Duration.ofNanos(nanos / 2 + ThreadLocalRandom.current().nextLong(nanos / 2 + 1));
  }
}
