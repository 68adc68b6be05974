package io.opendms.dms;

import io.opendms.dms.v1.ConsumerServiceGrpc;
import io.opendms.dms.v1.ProducerServiceGrpc;
import io.opendms.dms.v1.QueueServiceGrpc;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A connection to a DMS server. It is safe for concurrent use; create one per process and
 * target, and close it when done. Resources live in projects: {@link #project(String)} returns
 * the handle that manages and uses them.
 *
 * <pre>{@code
 * try (DmsClient client = DmsClient.builder().target("localhost:9090").build()) {
 *   Project project = client.project("0123456789abcdef0123456789abcdef");
 *   project.send("orders", List.of(Message.of("hello")));
 * }
 * }</pre>
 *
 * <p>The connection is made in the background: building does not wait for it, and a call made
 * while the server cannot be reached fails with code {@code UNAVAILABLE}.
 */
public final class DmsClient implements AutoCloseable {
  final ManagedChannel channel;
  final QueueServiceGrpc.QueueServiceBlockingStub queues;
  final ProducerServiceGrpc.ProducerServiceBlockingStub producer;
  final ProducerServiceGrpc.ProducerServiceFutureStub producerFutures;
  final ConsumerServiceGrpc.ConsumerServiceBlockingStub consumer;
  final ConsumerServiceGrpc.ConsumerServiceFutureStub consumerFutures;
  final ConsumerServiceGrpc.ConsumerServiceStub consumerStreams;
  final Duration callTimeout;
  final int listPageSize;

  private DmsClient(Builder b) {
    ManagedChannelBuilder<?> cb =
        Grpc.newChannelBuilder(b.target, b.credentials)
            .maxInboundMessageSize(b.maxMessageSize)
            .userAgent("dms-java");
    if (b.token != null) {
      Metadata headers = new Metadata();
      headers.put(
          Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + b.token);
      cb.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    if (b.configurer != null) {
      b.configurer.accept(cb);
    }
    this.channel = cb.build();
    this.queues = QueueServiceGrpc.newBlockingStub(channel);
    this.producer = ProducerServiceGrpc.newBlockingStub(channel).withMaxOutboundMessageSize(b.maxMessageSize);
    this.producerFutures = ProducerServiceGrpc.newFutureStub(channel).withMaxOutboundMessageSize(b.maxMessageSize);
    this.consumer = ConsumerServiceGrpc.newBlockingStub(channel).withMaxOutboundMessageSize(b.maxMessageSize);
    this.consumerFutures = ConsumerServiceGrpc.newFutureStub(channel).withMaxOutboundMessageSize(b.maxMessageSize);
    this.consumerStreams = ConsumerServiceGrpc.newStub(channel).withMaxOutboundMessageSize(b.maxMessageSize);
    this.callTimeout = b.callTimeout;
    this.listPageSize = b.listPageSize;
  }

  /** Returns a builder; {@link Builder#target(String)} is required. */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Returns the handle of a project: every queue, consumer group and message belongs to one.
   * The handle is cheap and safe for concurrent use. The server checks the id (1 to 64
   * characters of {@code [A-Za-z0-9_-]}) on every call.
   */
  public Project project(String id) {
    return new Project(this, Objects.requireNonNull(id, "id"));
  }

  /**
   * The underlying channel, for calling the generated stubs of {@code dms.v1} directly (for
   * example {@code QueueServiceGrpc.newBlockingStub(client.channel())}).
   */
  public ManagedChannel channel() {
    return channel;
  }

  /**
   * Closes the connection, waiting up to 5 seconds for calls still running. Producers,
   * consumers and subscriptions built on the client should be closed first.
   */
  @Override
  public void close() {
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /** Builds a {@link DmsClient}. */
  public static final class Builder {
    private String target;
    private ChannelCredentials credentials = InsecureChannelCredentials.create();
    private int maxMessageSize = Limits.DEFAULT_MAX_MESSAGE_SIZE;
    private Duration callTimeout = Duration.ofSeconds(30);
    private int listPageSize = 100;
    private Consumer<ManagedChannelBuilder<?>> configurer;
    private String token;

    private Builder() {}

    /**
     * Sends {@code authorization: Bearer <token>} on every call, for a server with
     * authentication on ({@code dmsd -auth.enabled}): a token from its Keystone endpoint
     * ({@code POST /v3/auth/tokens}, header {@code X-Subject-Token}) or an API token. Without
     * transport security the token travels in the clear: use TLS for a server on another host.
     */
    public Builder token(String token) {
      this.token = Objects.requireNonNull(token, "token");
      return this;
    }

    /**
     * The server's gRPC address: a gRPC target such as {@code localhost:9090} or {@code
     * dns:///dms.example.com:9090}.
     */
    public Builder target(String target) {
      this.target = Objects.requireNonNull(target, "target");
      return this;
    }

    /** An unencrypted connection, which suits a server on the local host. The default. */
    public Builder usePlaintext() {
      this.credentials = InsecureChannelCredentials.create();
      return this;
    }

    /** TLS with the platform's trusted certificates. */
    public Builder useTransportSecurity() {
      this.credentials = TlsChannelCredentials.create();
      return this;
    }

    /** Any channel credentials, for example TLS with a client certificate. */
    public Builder credentials(ChannelCredentials credentials) {
      this.credentials = Objects.requireNonNull(credentials, "credentials");
      return this;
    }

    /**
     * The largest gRPC message sent or received, in bytes; {@link
     * Limits#DEFAULT_MAX_MESSAGE_SIZE} (16 MiB) by default.
     */
    public Builder maxMessageSize(int bytes) {
      if (bytes <= 0) {
        throw new IllegalArgumentException("maxMessageSize must be positive");
      }
      this.maxMessageSize = bytes;
      return this;
    }

    /**
     * The deadline of each call, 30 s by default. A receive gets its wait time on top.
     */
    public Builder callTimeout(Duration d) {
      this.callTimeout = Objects.requireNonNull(d, "callTimeout");
      return this;
    }

    /** How many queues one page of {@link Project#listQueues()} fetches; 100 by default. */
    public Builder listPageSize(int n) {
      if (n <= 0) {
        throw new IllegalArgumentException("listPageSize must be positive");
      }
      this.listPageSize = n;
      return this;
    }

    /**
     * Adjusts the channel before it is built (interceptors, keepalive, executors, ...); runs
     * after this builder's own settings, so it wins where both set the same thing.
     */
    public Builder configureChannel(Consumer<ManagedChannelBuilder<?>> configurer) {
      this.configurer = Objects.requireNonNull(configurer, "configurer");
      return this;
    }

    /** Returns the client. */
    public DmsClient build() {
      if (target == null) {
        throw new IllegalStateException("DmsClient.Builder: target is required");
      }
      return new DmsClient(this);
    }
  }
}
