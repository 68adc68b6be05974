package io.opendms.dms;

import io.opendms.dms.v1.AttributeValue;
import com.google.protobuf.ByteString;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A message to send: a body of any bytes, named attributes, up to 3 tags and an optional
 * ordering key. Messages are immutable; build them with {@link #of(String)}, {@link
 * #of(byte[])} or {@link #builder()}.
 *
 * <p>An attribute value is a {@link String}, a {@link Boolean}, an integral number ({@link
 * Long}, {@link Integer}, {@link Short}, {@link Byte}) or a floating-point one ({@link Double},
 * {@link Float}). Received messages carry them as {@code String}, {@code Boolean}, {@code Long}
 * or {@code Double}.
 */
public final class Message {
  private final io.opendms.dms.v1.Message proto;
  private final int size;

  private Message(io.opendms.dms.v1.Message proto) {
    this.proto = proto;
    this.size = sizeOf(proto);
  }

  /** A message whose body is {@code body} in UTF-8. */
  public static Message of(String body) {
    return builder().body(body).build();
  }

  /** A message whose body is a copy of {@code body}. */
  public static Message of(byte[] body) {
    return builder().body(body).build();
  }

  /** Returns a builder of a message with an empty body. */
  public static Builder builder() {
    return new Builder();
  }

  static Message fromProto(io.opendms.dms.v1.Message proto) {
    return new Message(proto);
  }

  io.opendms.dms.v1.Message toProto() {
    return proto;
  }

  /** The body, a fresh copy. */
  public byte[] body() {
    return proto.getBody().toByteArray();
  }

  /** The body decoded as UTF-8. */
  public String bodyAsString() {
    return proto.getBody().toStringUtf8();
  }

  /** The attributes, in no particular order. */
  public Map<String, Object> attributes() {
    if (proto.getAttributesCount() == 0) {
      return Map.of();
    }
    Map<String, Object> out = new LinkedHashMap<>();
    proto.getAttributesMap().forEach((name, v) -> out.put(name, fromAttribute(v)));
    return Collections.unmodifiableMap(out);
  }

  /** The tags. */
  public List<String> tags() {
    return proto.getTagsList();
  }

  /** The ordering key; empty when the message has none. */
  public String orderingKey() {
    return proto.getOrderingKey();
  }

  /**
   * The size the server counts against its message and batch limits: the body plus, per
   * attribute, the name, 8 bytes and a string value.
   */
  public int size() {
    return size;
  }

  private static int sizeOf(io.opendms.dms.v1.Message m) {
    int size = m.getBody().size();
    for (Map.Entry<String, AttributeValue> e : m.getAttributesMap().entrySet()) {
      size += utf8Length(e.getKey()) + 8;
      if (e.getValue().getKindCase() == AttributeValue.KindCase.STRING_VALUE) {
        size += utf8Length(e.getValue().getStringValue());
      }
    }
    return size;
  }

  private static int utf8Length(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }

  private static Object fromAttribute(AttributeValue v) {
    return switch (v.getKindCase()) {
      case STRING_VALUE -> v.getStringValue();
      case INT_VALUE -> v.getIntValue();
      case DOUBLE_VALUE -> v.getDoubleValue();
      case BOOL_VALUE -> v.getBoolValue();
      case KIND_NOT_SET -> null;
    };
  }

  static AttributeValue toAttribute(String name, Object value) {
    AttributeValue.Builder b = AttributeValue.newBuilder();
    if (value instanceof String s) {
      return b.setStringValue(s).build();
    } else if (value instanceof Boolean x) {
      return b.setBoolValue(x).build();
    } else if (value instanceof Long || value instanceof Integer || value instanceof Short
        || value instanceof Byte) {
      return b.setIntValue(((Number) value).longValue()).build();
    } else if (value instanceof Double || value instanceof Float) {
      return b.setDoubleValue(((Number) value).doubleValue()).build();
    }
    throw new IllegalArgumentException(
        "attribute " + name + ": values of type "
            + (value == null ? "null" : value.getClass().getName())
            + " cannot be sent; use a String, Boolean, integral number or floating-point number");
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Message m && proto.equals(m.proto);
  }

  @Override
  public int hashCode() {
    return proto.hashCode();
  }

  @Override
  public String toString() {
    return "Message{" + size + " bytes, tags=" + tags() + ", attributes=" + attributes() + "}";
  }

  /** Builds a {@link Message}. */
  public static final class Builder {
    private ByteString body = ByteString.EMPTY;
    private final Map<String, AttributeValue> attributes = new LinkedHashMap<>();
    private final List<String> tags = new ArrayList<>();
    private String orderingKey = "";
    private java.time.Duration delay;
    private java.time.Instant deliverTime;

    private Builder() {}

    /** Sets the body to a copy of {@code body}. */
    public Builder body(byte[] body) {
      this.body = ByteString.copyFrom(Objects.requireNonNull(body, "body"));
      return this;
    }

    /** Sets the body to {@code body} in UTF-8. */
    public Builder body(String body) {
      this.body = ByteString.copyFromUtf8(Objects.requireNonNull(body, "body"));
      return this;
    }

    /**
     * Sets an attribute; names are 1 to 64 characters.
     *
     * @throws IllegalArgumentException when the value's type cannot be sent
     */
    public Builder attribute(String name, Object value) {
      attributes.put(Objects.requireNonNull(name, "name"), toAttribute(name, value));
      return this;
    }

    /** Sets every attribute of {@code attributes}. */
    public Builder attributes(Map<String, ?> attributes) {
      attributes.forEach(this::attribute);
      return this;
    }

    /**
     * Adds tags that consumer groups can filter on: up to 3 in all, each 1 to 64 characters of
     * {@code [A-Za-z0-9_-]} (the server checks).
     */
    public Builder tags(String... tags) {
      for (String t : tags) {
        this.tags.add(Objects.requireNonNull(t, "tag"));
      }
      return this;
    }

    /**
     * Sets the ordering key, at most 128 bytes. On a FIFO queue messages with the same key are
     * delivered in order, one at a time, while different keys proceed in parallel; on a normal
     * queue the key picks the partition.
     */
    public Builder orderingKey(String key) {
      this.orderingKey = Objects.requireNonNull(key, "key");
      return this;
    }

    /**
     * Keeps the message from consumers for {@code delay} after the send (0 to 7 days): a
     * scheduled message, whose {@link SendResult#scheduleId()} cancels or reschedules it
     * ({@link Project#cancelScheduledMessages}, {@link Project#rescheduleMessage}). Only normal
     * and FIFO queues take them ({@code DELAY_NOT_ALLOWED} otherwise). Set at most one of delay
     * and deliver time ({@code DELAY_INVALID} otherwise).
     */
    public Builder delay(java.time.Duration delay) {
      this.delay = Objects.requireNonNull(delay, "delay");
      return this;
    }

    /** Makes the message visible at {@code time}, at most 7 days ahead; see {@link #delay}. */
    public Builder deliverTime(java.time.Instant time) {
      this.deliverTime = Objects.requireNonNull(time, "time");
      return this;
    }

    /** Returns the message. */
    public Message build() {
      io.opendms.dms.v1.Message.Builder b =
          io.opendms.dms.v1.Message.newBuilder()
              .setBody(body)
              .putAllAttributes(attributes)
              .addAllTags(tags)
              .setOrderingKey(orderingKey);
      if (delay != null) {
        b.setDelay(Protos.duration(delay));
      }
      if (deliverTime != null) {
        b.setDeliverTime(Protos.timestamp(deliverTime));
      }
      return new Message(b.build());
    }
  }
}
