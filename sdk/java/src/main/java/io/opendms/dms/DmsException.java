package io.opendms.dms;

import io.opendms.dms.v1.ErrorReason;
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/**
 * A failed call to DMS: the gRPC status code, the stable reason the server attached, and the
 * server's message. Every method of this package that calls the server throws its failures as
 * a {@code DmsException}, and every future it returns completes exceptionally with one.
 *
 * <p>Branch on {@link #reason()} (or {@link #code()}), never on the message:
 *
 * <pre>{@code
 * try {
 *   project.getQueue("orders");
 * } catch (DmsException e) {
 *   if (e.is(ErrorReason.ERROR_REASON_QUEUE_NOT_FOUND)) { ... }
 *   if (e.isRetryable()) { ... }
 * }
 * }</pre>
 *
 * <p>The reason comes from the {@code google.rpc.ErrorInfo} detail of domain {@value #DOMAIN}; it
 * is empty when the server attached none, for example when it could not be reached. A newer
 * server may send reasons this version does not know: {@link #reason()} has them unchanged, while
 * {@link #errorReason()} says {@code ERROR_REASON_UNSPECIFIED}.
 */
public class DmsException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The {@code google.rpc.ErrorInfo} domain of every DMS error. */
  public static final String DOMAIN = "dms.opendms.io";

  private static final String REASON_PREFIX = "ERROR_REASON_";

  private final Status.Code code;
  private final String reason;
  private final String serverMessage;
  private final Map<String, String> metadata;

  /**
   * Returns an exception with the given parts; for tests and for code that wraps this client.
   */
  public DmsException(Status.Code code, String reason, String serverMessage, Throwable cause) {
    super(format(code, reason, serverMessage), cause);
    this.code = code;
    this.reason = reason == null ? "" : reason;
    this.serverMessage = serverMessage == null ? "" : serverMessage;
    this.metadata = Map.of();
  }

  private DmsException(
      Status.Code code,
      String reason,
      String serverMessage,
      Map<String, String> metadata,
      Throwable cause) {
    super(format(code, reason, serverMessage), cause);
    this.code = code;
    this.reason = reason;
    this.serverMessage = serverMessage;
    this.metadata = Map.copyOf(metadata);
  }

  private static String format(Status.Code code, String reason, String message) {
    String m = message == null ? "" : message;
    return reason == null || reason.isEmpty()
        ? code + ": " + m
        : reason + " (" + code + "): " + m;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return code;
  }

  /**
   * The stable, machine-readable reason: the name of a {@code io.opendms.dms.v1.ErrorReason} value without
   * its {@code ERROR_REASON_} prefix, such as {@code QUEUE_NOT_FOUND}; empty when the server
   * attached none.
   */
  public String reason() {
    return reason;
  }

  /**
   * The reason as the generated enum; {@code ERROR_REASON_UNSPECIFIED} when there is none or
   * this version does not know it.
   */
  public ErrorReason errorReason() {
    return toErrorReason(reason);
  }

  /** Whether the reason is {@code r}. */
  public boolean is(ErrorReason r) {
    return r != ErrorReason.ERROR_REASON_UNSPECIFIED && errorReason() == r;
  }

  /** The server's message, for people. */
  public String serverMessage() {
    return serverMessage;
  }

  /** The {@code ErrorInfo} metadata, if the server sent any. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** Whether a queue, group or message does not exist ({@code NOT_FOUND}). */
  public boolean isNotFound() {
    return code == Status.Code.NOT_FOUND;
  }

  /** Whether a queue or group of that name exists already ({@code ALREADY_EXISTS}). */
  public boolean isAlreadyExists() {
    return code == Status.Code.ALREADY_EXISTS;
  }

  /**
   * Whether the same call may succeed when repeated unchanged: the server could not be reached
   * ({@code UNAVAILABLE}) or the call timed out ({@code DEADLINE_EXCEEDED}). Repeating a send
   * that timed out can store its messages twice.
   */
  public boolean isRetryable() {
    return code == Status.Code.UNAVAILABLE || code == Status.Code.DEADLINE_EXCEEDED;
  }

  static ErrorReason toErrorReason(String reason) {
    if (reason == null || reason.isEmpty()) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
    try {
      return ErrorReason.valueOf(REASON_PREFIX + reason);
    } catch (IllegalArgumentException unknown) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
  }

  /**
   * Converts the failure of a gRPC call (possibly wrapped by a future) into a DmsException.
   * Anything else that is not a gRPC status becomes {@code UNKNOWN}, or {@code CANCELLED} for
   * a cancellation or interruption.
   */
  static DmsException from(Throwable t) {
    Throwable cause = unwrap(t);
    if (cause instanceof DmsException e) {
      return e;
    }
    if (cause instanceof CancellationException || cause instanceof InterruptedException) {
      return new DmsException(Status.Code.CANCELLED, "", String.valueOf(cause.getMessage()), cause);
    }
    Status status = Status.fromThrowable(cause);
    if (status.getCode() == Status.Code.UNKNOWN && status.getCause() == cause) {
      return new DmsException(Status.Code.UNKNOWN, "", String.valueOf(cause), cause);
    }
    String reason = "";
    Map<String, String> metadata = Map.of();
    com.google.rpc.Status details = StatusProto.fromThrowable(cause);
    if (details != null) {
      for (Any any : details.getDetailsList()) {
        if (!any.is(ErrorInfo.class)) {
          continue;
        }
        try {
          ErrorInfo info = any.unpack(ErrorInfo.class);
          if (DOMAIN.equals(info.getDomain())) {
            reason = info.getReason();
            metadata = info.getMetadataMap();
            break;
          }
        } catch (InvalidProtocolBufferException ignored) {
          // A malformed detail is no reason.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return new DmsException(status.getCode(), reason, message, metadata, cause);
  }

  private static Throwable unwrap(Throwable t) {
    Throwable c = t;
    while ((c instanceof ExecutionException || c instanceof CompletionException)
        && c.getCause() != null) {
      c = c.getCause();
    }
    return c;
  }
}
