package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Gives each test class a client of the shared dmsd and each test a project of its own, so that
 * tests never see each other's queues or run into quotas.
 */
@ExtendWith(DmsServerExtension.class)
abstract class DmsTestBase {
  static DmsServer server;
  static DmsClient client;
  Project project;

  @BeforeAll
  static void connect() {
    client = DmsClient.builder().target(server.grpcTarget).callTimeout(Duration.ofSeconds(20)).build();
  }

  @AfterAll
  static void disconnect() {
    client.close();
  }

  @BeforeEach
  void newProject() {
    byte[] id = new byte[16];
    ThreadLocalRandom.current().nextBytes(id);
    project = client.project(HexFormat.of().formatHex(id));
  }

  /** Receives until {@code n} messages arrived, failing after 20 s. */
  List<ReceivedMessage> receiveN(String queue, String group, int n) {
    List<ReceivedMessage> got = new ArrayList<>();
    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    while (got.size() < n) {
      if (System.nanoTime() > deadline) {
        fail("received " + got.size() + " of " + n + " messages in 20 s");
      }
      got.addAll(
          project.receive(
              queue,
              group,
              ReceiveOptions.builder()
                  .maxMessages(Math.min(n - got.size(), Limits.MAX_RECEIVE_MESSAGES))
                  .waitTime(Duration.ofSeconds(1))
                  .build()));
    }
    return got;
  }

  static List<String> bodies(List<ReceivedMessage> msgs) {
    return msgs.stream().map(ReceivedMessage::bodyAsString).toList();
  }

  /** Waits until {@code condition} holds, failing after {@code timeout}. */
  static void eventually(Duration timeout, String what, BooleanSupplier condition) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        fail("not within " + timeout + ": " + what);
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        fail("interrupted");
      }
    }
  }
}
