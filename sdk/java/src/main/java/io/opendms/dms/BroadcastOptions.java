package io.opendms.dms;

import io.opendms.dms.v1.BroadcastStart;
import java.util.Objects;

/**
 * Makes a receive a broadcast receive: the consumer named by the receive's consumer id gets
 * every message of the group's queue by itself instead of sharing them with the group's other
 * consumers, and the server keeps its position.
 *
 * @param start where a consumer the server does not know yet starts
 * @param autoAck acknowledge every message as it is delivered: nothing needs to be acked, and
 *     nothing is delivered twice to this consumer unless the server crashes mid-receive
 */
public record BroadcastOptions(Start start, boolean autoAck) {
  /** Where a broadcast consumer starts. */
  public enum Start {
    /** A new consumer starts at the earliest retained message. */
    EARLIEST,
    /**
     * The consumer continues from the position the server kept for it; a new one starts at the
     * earliest retained message.
     */
    COMMITTED,
    /** A new consumer starts after the last message stored so far. */
    LATEST
  }

  public BroadcastOptions {
    Objects.requireNonNull(start, "start");
  }

  io.opendms.dms.v1.BroadcastOptions toProto() {
    BroadcastStart s =
        switch (start) {
          case EARLIEST -> BroadcastStart.BROADCAST_START_EARLIEST;
          case COMMITTED -> BroadcastStart.BROADCAST_START_COMMITTED;
          case LATEST -> BroadcastStart.BROADCAST_START_LATEST;
        };
    return io.opendms.dms.v1.BroadcastOptions.newBuilder().setStart(s).setAutoAck(autoAck).build();
  }
}
