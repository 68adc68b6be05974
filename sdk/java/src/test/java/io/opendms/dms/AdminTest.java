package io.opendms.dms;

import io.opendms.dms.v1.ErrorReason;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class AdminTest extends DmsTestBase {

  @Test
  void queuesAndGroupsRoundTrip() {
    Queue orders =
        project.createQueue(
            QueueConfig.builder("orders")
                .description("all orders")
                .partitions(2)
                .retention(Duration.ofHours(1))
                .build());
    assertEquals("orders", orders.displayName());
    assertEquals("projects/" + project.id() + "/queues/" + orders.id(), orders.name());
    assertEquals("all orders", orders.description());
    assertEquals(QueueMode.NORMAL, orders.mode());
    assertEquals(2, orders.partitions());
    assertEquals(Duration.ofHours(1), orders.retention());
    assertNotNull(orders.createTime());

    Queue fifo = project.createQueue(QueueConfig.builder("fifo").mode(QueueMode.FIFO).deadLetters(3).build());
    assertEquals(QueueMode.FIFO, fifo.mode());
    assertEquals(1, fifo.partitions());
    assertTrue(fifo.deadLetters());
    assertEquals(3, fifo.maxConsumeCount());

    assertEquals(orders.id(), project.getQueue("orders").id(), "by display name");
    assertEquals("orders", project.getQueue(orders.id()).displayName(), "by id");
    try (DmsClient paging = DmsClient.builder().target(server.grpcTarget).listPageSize(1).build()) {
      List<String> names =
          paging.project(project.id()).listQueues().stream().map(Queue::displayName).toList();
      assertEquals(List.of("orders", "fifo"), names, "oldest first, across pages of one");
    }

    Group billing = project.createGroup("orders", "billing");
    assertTrue(billing.id().startsWith("g-"), billing.id());
    assertEquals("billing", billing.displayName());
    project.createGroup(orders.id(), "audit");
    assertEquals(
        List.of("billing", "audit"),
        project.listGroups("orders").stream().map(Group::displayName).toList());
    assertEquals("billing", project.getGroup("orders", billing.id()).displayName());
    assertNull(project.getGroup("orders", "billing").tagFilter());

    project.send("orders", Message.of("a"), Message.of("b"));
    GroupStats stats = project.groupStats("orders", "billing");
    assertEquals(2, stats.producedMessages());
    assertEquals(2, stats.availableMessages());
    assertEquals(0, stats.consumedMessages());
    assertEquals(2, project.getQueue("orders").messageCount());
    assertEquals(2, project.getQueue("orders").groupCount());

    project.deleteGroup("orders", "billing");
    DmsException gone = assertThrows(DmsException.class, () -> project.getGroup("orders", "billing"));
    assertEquals("GROUP_NOT_FOUND", gone.reason());
    project.deleteQueue("orders");
    assertTrue(assertThrows(DmsException.class, () -> project.getQueue("orders")).isNotFound());
    assertEquals(List.of("fifo"), project.listQueues().stream().map(Queue::displayName).toList());
  }

  @Test
  void errorsCarryCodeAndStableReason() {
    DmsException missing = assertThrows(DmsException.class, () -> project.getQueue("missing"));
    assertEquals(Status.Code.NOT_FOUND, missing.code());
    assertEquals("QUEUE_NOT_FOUND", missing.reason());
    assertEquals(ErrorReason.ERROR_REASON_QUEUE_NOT_FOUND, missing.errorReason());
    assertTrue(missing.is(ErrorReason.ERROR_REASON_QUEUE_NOT_FOUND));
    assertTrue(missing.isNotFound());
    assertTrue(missing.getMessage().startsWith("QUEUE_NOT_FOUND (NOT_FOUND): "), missing.getMessage());
    assertTrue(!missing.serverMessage().isEmpty());

    project.createQueue(QueueConfig.of("dup"));
    DmsException dup = assertThrows(DmsException.class, () -> project.createQueue(QueueConfig.of("dup")));
    assertEquals(Status.Code.ALREADY_EXISTS, dup.code());
    assertEquals("QUEUE_ALREADY_EXISTS", dup.reason());
    assertTrue(dup.isAlreadyExists());

    DmsException bad = assertThrows(DmsException.class, () -> project.createQueue(QueueConfig.of("no spaces")));
    assertEquals(Status.Code.INVALID_ARGUMENT, bad.code());
    assertEquals("QUEUE_NAME_INVALID", bad.reason());

    DmsException dl =
        assertThrows(
            DmsException.class,
            () -> project.createQueue(QueueConfig.builder("dl").deadLetters(0).build()));
    assertEquals("MAX_CONSUME_COUNT_INVALID", dl.reason());

    DmsException noGroup = assertThrows(DmsException.class, () -> project.getGroup("dup", "nobody"));
    assertEquals("GROUP_NOT_FOUND", noGroup.reason());
    assertTrue(!noGroup.isRetryable());
  }

  @Test
  void unreachableServerIsUnavailableAndRetryable() throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    try (DmsClient nowhere =
        DmsClient.builder().target("127.0.0.1:" + port).callTimeout(Duration.ofSeconds(2)).build()) {
      DmsException e = assertThrows(DmsException.class, () -> nowhere.project(project.id()).listQueues());
      assertEquals(Status.Code.UNAVAILABLE, e.code());
      assertEquals("", e.reason());
      assertTrue(e.isRetryable());
    }
  }
}
