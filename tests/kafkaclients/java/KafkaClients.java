// Kafka client scenarios of Java kafka-clients for tests/kafkaclients. The Go
// tests run this file in the JDK's source-file mode with the jars that
// pom.xml names on the class path; each scenario prints one JSON document on
// stdout and exits non-zero on any client error.
//
// Usage: KafkaClients ACTION BOOTSTRAP TOPIC [N PREFIX COMPRESSION | N GROUP]
//   produce: an idempotent producer (acks=all) sends N records;
//   consume: a consumer of GROUP reads N records, committing synchronously;
//   admin:   AdminClient creates, describes, lists and deletes TOPIC; creates
//            TOPIC-ht with dms.queue.mode=KAFKA_HT and reads the config
//            back; is refused a topic with cleanup.policy=compact;
//   cooperative: two consumers of GROUP with the cooperative-sticky assignor,
//            the second joining once the first has records (an incremental
//            rebalance), read N records between them, committing
//            synchronously;
//   transactions: a transactional producer's initTransactions, which DMS
//            refuses (no transactions); prints the exception's class;
//   acks:    N records with acks=0 and N with acks=1, values PREFIX-0-i
//            and PREFIX-1-i (not idempotent: that needs acks=all);
//   large:   N records of SIZE bytes, then reads them back with a consumer
//            whose fetch limits are 1 KiB (a fetch returns the first batch
//            whole however large);
//   groupadmin: with a GROUP that consumed TOPIC and has no members left,
//            AdminClient resets the group's offsets (as kafka-consumer-groups
//            --reset-offsets does), reads them back, deletes one partition's
//            offset, lists offsets earliest and latest, tries DeleteRecords
//            (refused by DMS) and deletes the group;
//   static:  a static member (group.instance.id INSTANCE) of GROUP reads N
//            records, committing, and closes without leaving the group;
//            prints the generation it had;
//   kip848:  a consumer with group.protocol=consumer (KIP-848), which DMS
//            does not serve; prints the exception's class;
//   inspect: with a GROUP that consumed TOPIC and has no members left,
//            AdminClient lists and describes the group and its offsets,
//            describes the topic's configs and adds a partition, and a
//            consumer looks offsets up by time.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
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
            case "inspect" -> inspect(bootstrap, topic, args[3]);
            case "kip848" -> kip848(bootstrap, topic);
            case "static" -> staticMember(bootstrap, topic, Integer.parseInt(args[3]), args[4], args[5]);
            case "groupadmin" -> groupAdmin(bootstrap, topic, args[3]);
            case "acks" -> acks(bootstrap, topic, Integer.parseInt(args[3]), args[4]);
            case "large" -> large(bootstrap, topic, Integer.parseInt(args[3]), Integer.parseInt(args[4]));
            case "transactions" -> transactions(bootstrap, topic);
            case "cooperative" -> cooperative(bootstrap, topic, Integer.parseInt(args[3]), args[4]);
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

    static void cooperative(String bootstrap, String topic, int n, String group) throws Exception {
        List<String> values = java.util.Collections.synchronizedList(new ArrayList<>());
        java.util.Set<String> members = java.util.concurrent.ConcurrentHashMap.newKeySet();
        java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.CountDownLatch firstHasRecords = new java.util.concurrent.CountDownLatch(1);
        List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
        Runnable member = () -> {
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 20);
            // Members learn of a rebalance from heartbeats: every 200 ms
            // rather than 3 s, so that it completes within the run.
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 200);
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, org.apache.kafka.clients.consumer.CooperativeStickyAssignor.class.getName());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
                consumer.subscribe(List.of(topic), new org.apache.kafka.clients.consumer.ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(java.util.Collection<TopicPartition> parts) {}
                    public void onPartitionsAssigned(java.util.Collection<TopicPartition> parts) {
                        if (!parts.isEmpty()) members.add(Thread.currentThread().getName());
                    }
                });
                while (!done.get() && System.nanoTime() < deadline) {
                    var records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : records) {
                        values.add(r.value());
                    }
                    if (!records.isEmpty()) {
                        try {
                            consumer.commitSync();
                        } catch (org.apache.kafka.common.errors.RebalanceInProgressException e) {
                            // The member is between the two rounds of a
                            // cooperative rebalance; the next poll finishes
                            // it, and the records come again if need be.
                        }
                        firstHasRecords.countDown();
                        Thread.sleep(50); // work, so that the second member joins midway
                    }
                    if (new java.util.HashSet<>(values).size() >= n) done.set(true);
                }
                // A commit refused between rebalance rounds is made good
                // before leaving, once the round is over.
                for (int attempt = 0; attempt < 50; attempt++) {
                    try {
                        consumer.commitSync();
                        break;
                    } catch (org.apache.kafka.common.errors.RebalanceInProgressException e) {
                        consumer.poll(Duration.ofMillis(100));
                    }
                }
            } catch (Throwable e) {
                errors.add(e);
            }
        };
        Thread a = new Thread(member), b = new Thread(member);
        a.start();
        firstHasRecords.await(60, TimeUnit.SECONDS);
        b.start();
        a.join();
        b.join();
        if (!errors.isEmpty()) throw new RuntimeException(errors.get(0));
        StringBuilder out = new StringBuilder("{\"members_assigned\": " + members.size() + ", \"values\": [");
        synchronized (values) {
            for (int i = 0; i < values.size(); i++) {
                out.append(i > 0 ? ", " : "").append('"').append(values.get(i)).append('"');
            }
        }
        System.out.println(out.append("]}"));
    }

    static void transactions(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-" + topic);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        String refused = "";
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            producer.initTransactions();
        } catch (Exception e) {
            refused = e.getClass().getName();
        }
        System.out.println("{\"refused\": \"" + refused + "\"}");
    }

    static void acks(String bootstrap, String topic, int n, String prefix) throws Exception {
        for (String acks : List.of("0", "1")) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
            p.put(ProducerConfig.ACKS_CONFIG, acks);
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, String.format("%s-%s-%03d", prefix, acks, i))));
                }
                for (Future<RecordMetadata> f : sent) {
                    f.get(60, TimeUnit.SECONDS);
                }
            }
        }
        System.out.println("{\"delivered\": " + 2 * n + "}");
    }

    static void large(String bootstrap, String topic, int n, int size) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new org.apache.kafka.common.serialization.ByteArraySerializer())) {
            for (int i = 0; i < n; i++) {
                byte[] value = new byte[size];
                java.util.Arrays.fill(value, (byte) ('a' + i % 26));
                producer.send(new ProducerRecord<>(topic, 0, null, value)).get(60, TimeUnit.SECONDS);
            }
        }
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 1024);
        c.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 1024);
        int got = 0;
        boolean intact = true;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new org.apache.kafka.common.serialization.ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            while (got < n && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    byte want = (byte) ('a' + (int) r.offset() % 26);
                    intact &= r.value().length == size && r.value()[0] == want && r.value()[size - 1] == want;
                    got++;
                }
            }
        }
        System.out.println("{\"consumed\": " + got + ", \"intact\": " + intact + "}");
    }

    static void groupAdmin(String bootstrap, String topic, String group) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        StringBuilder out = new StringBuilder("{");
        try (Admin admin = Admin.create(p)) {
            TopicPartition p0 = new TopicPartition(topic, 0), p1 = new TopicPartition(topic, 1);
            admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1), p1, new OffsetAndMetadata(2))).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> reset = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            admin.deleteConsumerGroupOffsets(group, java.util.Set.of(p1)).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> left = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            var earliest = admin.listOffsets(Map.of(p0, org.apache.kafka.clients.admin.OffsetSpec.earliest())).all().get(30, TimeUnit.SECONDS);
            var latest = admin.listOffsets(Map.of(p0, org.apache.kafka.clients.admin.OffsetSpec.latest())).all().get(30, TimeUnit.SECONDS);
            String deleteRecords = "";
            try {
                admin.deleteRecords(Map.of(p0, org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(1))).all().get(30, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                deleteRecords = e.getCause().getClass().getName();
            }
            admin.deleteConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
            boolean listed = false;
            for (ConsumerGroupListing l : admin.listConsumerGroups().all().get(30, TimeUnit.SECONDS)) {
                listed |= l.groupId().equals(group);
            }
            out.append("\"reset_p0\": ").append(reset.get(p0).offset())
               .append(", \"reset_p1\": ").append(reset.get(p1).offset())
               .append(", \"p1_after_delete\": ").append(left.containsKey(p1) && left.get(p1) != null)
               .append(", \"earliest_p0\": ").append(earliest.get(p0).offset())
               .append(", \"latest_p0\": ").append(latest.get(p0).offset())
               .append(", \"delete_records\": \"").append(deleteRecords).append('"')
               .append(", \"listed_after_delete\": ").append(listed);
        }
        System.out.println(out.append("}"));
    }

    static void staticMember(String bootstrap, String topic, int n, String group, String instance) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30000);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        List<String> values = new ArrayList<>();
        int generation;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (values.size() < n && System.nanoTime() < deadline) {
                var records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    values.add(r.value());
                }
                if (!records.isEmpty()) {
                    consumer.commitSync();
                }
            }
            generation = consumer.groupMetadata().generationId();
            // Closing a static member does not send LeaveGroup: the group
            // keeps its assignment until the session times out.
        }
        StringBuilder out = new StringBuilder("{\"generation\": " + generation + ", \"values\": [");
        for (int i = 0; i < values.size(); i++) {
            out.append(i > 0 ? ", " : "").append('"').append(values.get(i)).append('"');
        }
        System.out.println(out.append("]}"));
    }

    static void kip848(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "kip848-" + topic);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        String refused = "";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200));
            }
        } catch (Exception e) {
            refused = e.getClass().getName();
        }
        System.out.println("{\"refused\": \"" + refused + "\"}");
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
            admin.createTopics(List.of(new NewTopic(topic + "-ht", 1, (short) 1).configs(Map.of("dms.queue.mode", "KAFKA_HT")))).all().get(30, TimeUnit.SECONDS);
            ConfigResource ht = new ConfigResource(ConfigResource.Type.TOPIC, topic + "-ht");
            String mode = admin.describeConfigs(List.of(ht)).all().get(30, TimeUnit.SECONDS).get(ht).get("dms.queue.mode").value();
            String compact = "";
            try {
                admin.createTopics(List.of(new NewTopic(topic + "-compact", 1, (short) 1).configs(Map.of("cleanup.policy", "compact")))).all().get(30, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                compact = e.getCause().getClass().getName();
            }
            System.out.println("{\"partitions\": " + partitions + ", \"listed\": " + listed + ", \"listed_after_delete\": " + listedAfter
                + ", \"ht_mode\": \"" + mode + "\", \"compact\": \"" + compact + "\"}");
        }
    }

    static void inspect(String bootstrap, String topic, String group) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        StringBuilder out = new StringBuilder("{");
        try (Admin admin = Admin.create(p)) {
            boolean listed = false;
            for (ConsumerGroupListing l : admin.listConsumerGroups().all().get(30, TimeUnit.SECONDS)) {
                listed |= l.groupId().equals(group);
            }
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
            long committed = 0;
            for (OffsetAndMetadata o : admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS).values()) {
                committed += o.offset();
            }
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all().get(30, TimeUnit.SECONDS);
            int partitions = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic).partitions().size();
            out.append("\"listed\": ").append(listed)
               .append(", \"state\": \"").append(d.groupState()).append('"')
               .append(", \"members\": ").append(d.members().size())
               .append(", \"committed\": ").append(committed)
               .append(", \"retention_ms\": \"").append(config.get("retention.ms") == null ? "" : config.get("retention.ms").value()).append('"')
               .append(", \"partitions\": ").append(partitions);
        }
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            Map<TopicPartition, OffsetAndTimestamp> early = consumer.offsetsForTimes(Map.of(tp, 0L), Duration.ofSeconds(30));
            Map<TopicPartition, OffsetAndTimestamp> late = consumer.offsetsForTimes(Map.of(tp, System.currentTimeMillis() + 3_600_000L), Duration.ofSeconds(30));
            out.append(", \"offset_at_0\": ").append(early.get(tp) == null ? -1 : early.get(tp).offset())
               .append(", \"offset_in_an_hour\": ").append(late.get(tp) == null ? -1 : late.get(tp).offset());
        }
        System.out.println(out.append("}"));
    }
}
