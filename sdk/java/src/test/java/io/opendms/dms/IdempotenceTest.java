package io.opendms.dms;

import io.opendms.dms.v1.ProducerServiceGrpc;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class IdempotenceTest extends DmsTestBase {

  @Test
  void aBatchSentAgainWithItsKeyIsStoredOnce() {
    project.createQueue(QueueConfig.of("q"));
    List<Message> batch = List.of(Message.of("a"), Message.of("b"), Message.of("c"));
    List<SendResult> first = project.send("q", batch, "batch-1");
    List<SendResult> again = project.send("q", batch, "batch-1");
    assertEquals(first, again, "the retry is answered with the first attempt's results");
    assertEquals(3, project.getQueue("q").messageCount());
  }

  /**
   * The server stores the first attempt of a batch but its answer is lost on the way back (as
   * when a connection drops mid-answer): the producer retries, and the batch's key keeps the
   * retry from storing it twice.
   */
  @Test
  void theProducerRetriesALostAnswerWithoutDuplicates() {
    project.createQueue(QueueConfig.builder("q").partitions(2).build());
    project.createGroup("q", "g");
    LoseAnswers lose = new LoseAnswers(1);
    try (DmsClient lossy =
        DmsClient.builder().target(server.grpcTarget).configureChannel(b -> b.intercept(lose)).build()) {
      List<CompletableFuture<SendResult>> futures = new ArrayList<>();
      try (Producer producer =
          lossy.project(project.id()).newProducer("q", ProducerOptions.builder().linger(Duration.ofSeconds(10)).build())) {
        for (int i = 0; i < 10; i++) {
          futures.add(producer.sendAsync(Message.of("m" + i)));
        }
        producer.flush();
        assertEquals(2, producer.calls(), "one batch, one retry");
      }
      assertEquals(0, lose.remaining.get(), "an answer was lost");
      assertTrue(futures.stream().allMatch(f -> f.isDone() && !f.isCompletedExceptionally()));
    }
    assertEquals(10, project.getQueue("q").messageCount(), "stored once");
    List<ReceivedMessage> got = receiveN("q", "g", 10);
    assertEquals(10, new HashSet<>(bodies(got)).size());
  }

  /** Drops the answers of the first SendMessages calls and fails them with UNAVAILABLE. */
  static final class LoseAnswers implements ClientInterceptor {
    final AtomicInteger remaining;

    LoseAnswers(int n) {
      this.remaining = new AtomicInteger(n);
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      ClientCall<Q, R> call = next.newCall(method, options);
      if (!method.getFullMethodName().equals(ProducerServiceGrpc.getSendMessagesMethod().getFullMethodName())) {
        return call;
      }
      boolean lost = remaining.getAndUpdate(n -> Math.max(0, n - 1)) > 0;
      if (!lost) {
        return call;
      }
      return new ForwardingClientCall.SimpleForwardingClientCall<>(call) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onMessage(R message) {
                  // stored by the server, never seen by the client
                }

                @Override
                public void onClose(Status status, Metadata trailers) {
                  super.onClose(Status.UNAVAILABLE.withDescription("answer lost (test)"), new Metadata());
                }
              },
              headers);
        }
      };
    }
  }
}
