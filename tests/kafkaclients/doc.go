// Package kafkaclients tests dmsd's Kafka front end with real, unchanged
// Kafka clients: sarama and segmentio/kafka-go in process, and as
// subprocesses confluent-kafka-python and kafka-python (pinned in
// python/constraints.txt), kcat from Debian (an older librdkafka) and Java
// kafka-clients 4.x (java/pom.xml). Each test starts one dmsd (the in-process
// test server, or the built binary where it kills it) and checks what the
// client did with franz-go's admin client or the native API, not with the
// client under test alone.
//
// run.sh installs the non-Go clients through the project's scripts and runs
// the tests (make kafka-clients-test, part of make test); the tests of those
// clients fail, not skip, when run without them.
package kafkaclients
