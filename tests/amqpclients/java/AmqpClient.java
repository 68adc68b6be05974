import com.rabbitmq.client.*;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;

/**
 * RabbitMQ's Java client against dmsd's AMQP listener (tests/amqpclients):
 * declare, publish with confirms (waitForConfirmsOrDie), mandatory return,
 * consume with prefetch and acks, reject with requeue. Prints one JSON line.
 * usage: AmqpClient HOST PORT QUEUE
 */
public class AmqpClient {
  public static void main(String[] args) throws Exception {
    ConnectionFactory f = new ConnectionFactory();
    f.setHost(args[0]);
    f.setPort(Integer.parseInt(args[1]));
    f.setVirtualHost("/");
    String queue = args[2];
    int n = 30;
    try (Connection conn = f.newConnection(); Channel ch = conn.createChannel()) {
      ch.queueDeclare(queue, true, false, false, Map.of("x-queue-type", "quorum"));
      ch.confirmSelect();
      BlockingQueue<String> returned = new LinkedBlockingQueue<>();
      ch.addReturnListener(r -> returned.add(r.getRoutingKey()));
      for (int i = 0; i < n; i++) {
        AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
            .deliveryMode(2).contentType("text/plain").headers(Map.of("i", i)).build();
        ch.basicPublish("", queue, true, props, ("j" + i).getBytes(StandardCharsets.UTF_8));
      }
      ch.basicPublish("", queue + "-missing", true, null, "x".getBytes(StandardCharsets.UTF_8));
      ch.waitForConfirmsOrDie(30_000);
      String ret = returned.poll(30, TimeUnit.SECONDS);

      ch.basicQos(7);
      BlockingQueue<String> got = new LinkedBlockingQueue<>();
      Set<String> rejected = ConcurrentHashMap.newKeySet();
      int[] redelivered = {0};
      String tag = ch.basicConsume(queue, false, new DefaultConsumer(ch) {
        @Override
        public void handleDelivery(String ctag, Envelope env, AMQP.BasicProperties p, byte[] body) throws java.io.IOException {
          String s = new String(body, StandardCharsets.UTF_8);
          if (s.equals("j5") && rejected.add(s)) {
            getChannel().basicReject(env.getDeliveryTag(), true);
            return;
          }
          if (env.isRedeliver()) redelivered[0]++;
          got.add(s);
          getChannel().basicAck(env.getDeliveryTag(), false);
        }
      });
      Set<String> all = new TreeSet<>();
      while (all.size() < n) {
        String s = got.poll(30, TimeUnit.SECONDS);
        if (s == null) throw new IllegalStateException("no delivery within 30 s; got " + all);
        all.add(s);
      }
      ch.basicCancel(tag);
      System.out.println("{\"received\": " + all.size() + ", \"redelivered\": " + redelivered[0]
          + ", \"returned\": \"" + ret + "\"}");
    }
  }
}
