package io.opendms.dms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.Status;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@link DmsClient.Builder#token(String)} against a dmsd with authentication on. */
class AuthTest {
  private static final String PASSWORD = "java-sdk-admin-password";
  private static final String PROJECT = "0123456789abcdef0123456789abcdef";

  @Test
  void tokenIsSentAndRequired() throws Exception {
    try (DmsServer server =
        DmsServer.start(List.of("-auth.enabled"), Map.of("DMS_ADMIN_PASSWORD", PASSWORD))) {
      String body =
          "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\","
              + "\"password\":\"" + PASSWORD + "\",\"domain\":{\"name\":\"Default\"}}}},"
              + "\"scope\":{\"project\":{\"id\":\"" + PROJECT + "\"}}}}";
      HttpResponse<String> resp =
          HttpClient.newHttpClient()
              .send(
                  HttpRequest.newBuilder(URI.create(server.httpBase + "/v3/auth/tokens"))
                      .header("Content-Type", "application/json")
                      .POST(HttpRequest.BodyPublishers.ofString(body))
                      .build(),
                  HttpResponse.BodyHandlers.ofString());
      assertEquals(201, resp.statusCode(), resp.body());
      String token = resp.headers().firstValue("X-Subject-Token").orElseThrow();

      try (DmsClient anonymous = DmsClient.builder().target(server.grpcTarget).build()) {
        DmsException e =
            assertThrows(
                DmsException.class,
                () -> anonymous.project(PROJECT).createQueue(QueueConfig.of("orders")));
        assertEquals(Status.Code.UNAUTHENTICATED, e.code());
        assertEquals("UNAUTHENTICATED", e.reason());
      }
      try (DmsClient client = DmsClient.builder().target(server.grpcTarget).token(token).build()) {
        assertNotNull(client.project(PROJECT).createQueue(QueueConfig.of("orders")));
        DmsException e =
            assertThrows(
                DmsException.class,
                () ->
                    client
                        .project("ffffffffffffffffffffffffffffffff")
                        .createQueue(QueueConfig.of("orders")));
        assertEquals("PERMISSION_DENIED", e.reason());
      }
    }
  }
}
