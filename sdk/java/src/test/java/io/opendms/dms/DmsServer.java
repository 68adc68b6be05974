package io.opendms.dms;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real dmsd for the tests: every role, embedded etcd, a temporary data directory, free
 * loopback ports. The binary is {@code $DMS_TEST_DMSD} when set, otherwise built from the
 * repository's services module into the build directory.
 */
final class DmsServer implements AutoCloseable {
  private final Process process;
  private final Path dataDir;
  final String grpcTarget;
  final String httpBase;

  private DmsServer(Process process, Path dataDir, String grpcTarget, String httpBase) {
    this.process = process;
    this.dataDir = dataDir;
    this.grpcTarget = grpcTarget;
    this.httpBase = httpBase;
  }

  static DmsServer start() throws IOException, InterruptedException {
    return start(List.of(), java.util.Map.of());
  }

  /** Starts a dmsd with extra flags and environment variables. */
  static DmsServer start(List<String> extraArgs, java.util.Map<String, String> env)
      throws IOException, InterruptedException {
    Path buildDir = Paths.get(System.getProperty("dms.build.dir", "target")).toAbsolutePath();
    Files.createDirectories(buildDir);
    Path binary = binary(buildDir);
    Path dataDir = Files.createTempDirectory("dms-java-test");
    int grpcPort = freePort();
    int httpPort = freePort();
    String grpc = "127.0.0.1:" + grpcPort;
    String http = "127.0.0.1:" + httpPort;
    File log = buildDir.resolve("dmsd.log").toFile();
    List<String> command =
        new java.util.ArrayList<>(
            List.of(
                binary.toString(),
                "-data-dir", dataDir.toString(),
                "-grpc-addr", grpc,
                "-http-addr", http,
                "-kafka.addr", "127.0.0.1:0",
                "-amqp.addr", "127.0.0.1:0",
                "-log.level", "warn"));
    command.addAll(extraArgs);
    ProcessBuilder pb =
        new ProcessBuilder(command)
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log));
    pb.environment().putAll(env);
    Process p = pb.start();
    DmsServer server = new DmsServer(p, dataDir, grpc, "http://" + http);
    try {
      server.awaitHealthy(Duration.ofSeconds(60), log);
    } catch (IOException | InterruptedException | RuntimeException e) {
      server.close();
      throw e;
    }
    return server;
  }

  private static Path binary(Path buildDir) throws IOException, InterruptedException {
    String env = System.getenv("DMS_TEST_DMSD");
    if (env != null && !env.isEmpty()) {
      return Paths.get(env).toAbsolutePath();
    }
    Path repo = Paths.get(System.getProperty("dms.repo.root", "../..")).toAbsolutePath().normalize();
    Path out = buildDir.resolve("dmsd");
    // Not inherited: the test JVM's own streams are Surefire's channel.
    Path log = buildDir.resolve("dmsd-build.log");
    Process build =
        new ProcessBuilder(List.of("go", "build", "-o", out.toString(), "./cmd/dmsd"))
            .directory(repo.resolve("services").toFile())
            .redirectErrorStream(true)
            .redirectOutput(log.toFile())
            .start();
    if (!build.waitFor(5, TimeUnit.MINUTES)) {
      build.destroyForcibly();
      throw new IOException("go build of dmsd timed out; see " + log);
    }
    if (build.exitValue() != 0) {
      throw new IOException(
          "go build of dmsd failed with exit code " + build.exitValue() + ":\n"
              + Files.readString(log));
    }
    return out;
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 0, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  private void awaitHealthy(Duration timeout, File log) throws IOException, InterruptedException {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    HttpRequest req =
        HttpRequest.newBuilder(URI.create(httpBase + "/healthz"))
            .timeout(Duration.ofSeconds(2))
            .build();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IOException(
            "dmsd exited with code " + process.exitValue() + "; see " + log);
      }
      try {
        if (http.send(req, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
          return;
        }
      } catch (IOException notYet) {
        // not listening yet
      }
      Thread.sleep(100);
    }
    throw new IOException("dmsd did not answer /healthz with 200 within " + timeout + "; see " + log);
  }

  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    try (Stream<Path> files = Files.walk(dataDir)) {
      files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
