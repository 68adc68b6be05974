package io.opendms.dms;

/** Limits of the server that this client plans around. */
public final class Limits {
  private Limits() {}

  /** The most messages one send may carry. */
  public static final int MAX_BATCH_MESSAGES = 1000;

  /** The most bytes of messages (see {@link Message#size()}) one send may carry. */
  public static final int MAX_BATCH_BYTES = 8 << 20;

  /** The most messages one receive may ask for. */
  public static final int MAX_RECEIVE_MESSAGES = 1000;

  /** The most acks one ack call may carry. */
  public static final int MAX_ACKS = 1000;

  /**
   * The largest gRPC message a client sends or receives by default: the server's own limit,
   * room for a full batch plus framing.
   */
  public static final int DEFAULT_MAX_MESSAGE_SIZE = 16 << 20;
}
