// ShareConsumer runs Java kafka-clients' KafkaShareConsumer (KIP-932)
// against dmsd and prints what it saw as JSON on standard output.
//
//   consume BOOTSTRAP TOPIC N GROUP  reads until N distinct values (or 30 s),
//                                    accepting each (implicit acknowledgement)
//   release BOOTSTRAP TOPIC GROUP    releases the first record it gets
//                                    (explicit acknowledgement) and reads
//                                    until that record comes back
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ShareConsumer {
    static Properties props(String bootstrap, String group) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    static String quote(String s) { return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""; }

    public static void main(String[] args) {
        long deadline = System.currentTimeMillis() + 30_000;
        if (args[0].equals("consume")) {
            int n = Integer.parseInt(args[3]);
            List<String> values = new ArrayList<>();
            try (KafkaShareConsumer<String, String> c = new KafkaShareConsumer<>(props(args[1], args[4]))) {
                c.subscribe(List.of(args[2]));
                while (values.size() < n && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                        values.add(r.value());
                    }
                    c.commitSync();
                }
            }
            StringBuilder out = new StringBuilder("{\"values\": [");
            for (int i = 0; i < values.size(); i++) {
                out.append(i > 0 ? ", " : "").append(quote(values.get(i)));
            }
            System.out.println(out.append("]}"));
            return;
        }
        Properties p = props(args[1], args[3]);
        p.put("share.acknowledgement.mode", "explicit");
        String released = null;
        int count = 0;
        try (KafkaShareConsumer<String, String> c = new KafkaShareConsumer<>(p)) {
            c.subscribe(List.of(args[2]));
            while (count < 2 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    if (released == null) {
                        released = r.value();
                        c.acknowledge(r, AcknowledgeType.RELEASE);
                        count = r.deliveryCount().orElse((short) 0);
                    } else if (r.value().equals(released)) {
                        c.acknowledge(r, AcknowledgeType.ACCEPT);
                        count = r.deliveryCount().orElse((short) 0);
                    } else {
                        c.acknowledge(r, AcknowledgeType.RELEASE);
                    }
                }
                c.commitSync();
            }
        }
        System.out.println("{\"released\": " + quote(String.valueOf(released)) + ", \"delivery_count\": " + count + "}");
    }
}
