package io.opendms.dms;

import java.util.List;
import java.util.Objects;

/** Chooses the dead letters a redrive gives back. {@link #all()} chooses every one (up to 1000). */
public final class RedriveOptions {
  final List<String> messageIds;
  final TagFilter tagFilter;
  final int maxPerSecond;
  final int limit;

  private RedriveOptions(Builder b) {
    this.messageIds = List.copyOf(b.messageIds);
    this.tagFilter = b.tagFilter;
    this.maxPerSecond = b.maxPerSecond;
    this.limit = b.limit;
  }

  /** Every dead letter, up to the server's default limit of 1000 per call. */
  public static RedriveOptions all() {
    return builder().build();
  }

  /** The dead letters of these message ids. */
  public static RedriveOptions messageIds(String... ids) {
    return builder().messageIds(List.of(ids)).build();
  }

  /** Returns a builder. */
  public static Builder builder() {
    return new Builder();
  }

  /** Builds {@link RedriveOptions}. */
  public static final class Builder {
    private List<String> messageIds = List.of();
    private TagFilter tagFilter;
    private int maxPerSecond;
    private int limit;

    private Builder() {}

    /** Only the dead letters of these message ids; empty means all. */
    public Builder messageIds(List<String> ids) {
      this.messageIds = List.copyOf(ids);
      return this;
    }

    /** Only dead letters whose message matches this filter. */
    public Builder tagFilter(TagFilter f) {
      this.tagFilter = Objects.requireNonNull(f, "tagFilter");
      return this;
    }

    /** At most this many dead letters per second; 0 means 1000. */
    public Builder maxPerSecond(int n) {
      this.maxPerSecond = n;
      return this;
    }

    /** At most this many dead letters in the call; 0 means 1000. */
    public Builder limit(int n) {
      this.limit = n;
      return this;
    }

    /** Returns the options. */
    public RedriveOptions build() {
      return new RedriveOptions(this);
    }
  }
}
