// Kafka client scenarios of Java kafka-clients for tests/kafkaclients. The Go
// tests run this file in the JDK's source-file mode with the jars that
// pom.xml names on the class path; each scenario prints one JSON document on
// stdout and exits non-zero on any client error.
//
// Usage: KafkaClients ACTION BOOTSTRAP TOPIC [N PREFIX COMPRESSION | N GROUP]
//   produce: an idempotent producer (acks=all) sends N records;
//   consume: a consumer of GROUP reads N records, committing synchronously;
//   admin:   AdminClient creates, describes, lists and deletes TOPIC.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaClients {
    public static void main(String[] args) throws Exception {
        String action = args[0], bootstrap = args[1], topic = args[2];
        switch (action) {
            case "produce" -> produce(bootstrap, topic, Integer.parseInt(args[3]), args[4], args[5]);
            case "consume" -> consume(bootstrap, topic, Integer.parseInt(args[3]), args[4]);
            case "admin" -> admin(bootstrap, topic);
            default -> throw new IllegalArgumentException("unknown action " + action);
        }
    }

    static void produce(String bootstrap, String topic, int n, String prefix, String compression) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < n; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, "k" + (i % 5), String.format("%s-%03d", prefix, i));
                r.headers().add("i", Integer.toString(i).getBytes());
                sent.add(producer.send(r));
            }
            for (Future<RecordMetadata> f : sent) {
                f.get(60, TimeUnit.SECONDS);
            }
        }
        System.out.println("{\"delivered\": " + sent.size() + "}");
    }

    static void consume(String bootstrap, String topic, int n, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        List<String> values = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (values.size() < n && System.nanoTime() < deadline) {
                var records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : records) {
                    values.add(r.value());
                }
                if (!records.isEmpty()) {
                    consumer.commitSync();
                }
            }
        }
        StringBuilder out = new StringBuilder("{\"values\": [");
        for (int i = 0; i < values.size(); i++) {
            out.append(i > 0 ? ", " : "").append('"').append(values.get(i)).append('"');
        }
        System.out.println(out.append("]}"));
    }

    static void admin(String bootstrap, String topic) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(30, TimeUnit.SECONDS);
            Map<String, TopicDescription> described = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS);
            int partitions = described.get(topic).partitions().size();
            boolean listed = admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic);
            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            boolean listedAfter = admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic);
            System.out.println("{\"partitions\": " + partitions + ", \"listed\": " + listed + ", \"listed_after_delete\": " + listedAfter + "}");
        }
    }
}
