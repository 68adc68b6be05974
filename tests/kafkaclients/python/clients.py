"""Kafka client scenarios for tests/kafkaclients, one per subcommand.

The Go tests run this with the venv's python against a real dmsd; each
scenario prints one JSON document on stdout and exits non-zero on any client
error. Usage: clients.py CLIENT ACTION --bootstrap HOST:PORT [options], where
CLIENT is confluent (confluent-kafka, librdkafka) or kafkapython (kafka-python).
"""

import argparse
import json
import sys
import time


def confluent_produce(a):
    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,  # implies acks=all and InitProducerId
        "acks": "all",
        "compression.type": a.compression,
        "linger.ms": 5,
    })
    errors = []
    delivered = []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.offset())

    for i in range(a.n):
        p.produce(a.topic, key=f"k{i % 5}", value=f"{a.prefix}-{i:03d}",
                  headers=[("i", str(i).encode())], on_delivery=report)
        p.poll(0)
    left = p.flush(60)
    if errors or left or len(delivered) != a.n:
        sys.exit(f"produce: {len(delivered)} delivered, {left} left, errors {errors[:5]}")
    return {"delivered": len(delivered)}


def confluent_transactions(a):
    """A transactional producer's init_transactions, which DMS refuses."""
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": "tx-" + a.topic})
    try:
        p.init_transactions(20)
    except KafkaException as e:
        err = e.args[0]
        return {"refused": err.name(), "fatal": err.fatal(), "retriable": err.retriable()}
    return {"refused": ""}


def confluent_soak(a):
    """An idempotent producer and a consumer group in one process for
    a.seconds seconds while the test kills and restarts dmsd; then the
    consumer goes on until it has every acknowledged record (or 60 s more).
    Prints the acknowledged and the consumed values."""
    from confluent_kafka import Consumer, KafkaError, Producer

    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000})
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    c.subscribe([a.topic])
    acked, consumed, errors = set(), set(), []

    def report(err, msg):
        if err is None:
            acked.add(msg.value().decode())
        else:
            errors.append(str(err))

    def consume():
        msgs = c.consume(num_messages=200, timeout=0.05)
        for m in msgs:
            if m.error() is None:
                consumed.add(m.value().decode())
        if msgs:
            try:
                c.commit(asynchronous=False)
            except Exception as e:  # the broker is away: commit later
                errors.append(str(e))

    i = 0
    end = time.time() + a.seconds
    while time.time() < end:
        for _ in range(20):
            try:
                p.produce(a.topic, value=f"s-{i:06d}", on_delivery=report)
                i += 1
            except BufferError:
                break
        p.poll(0)
        consume()
    p.flush(60)
    deadline = time.time() + 60
    while not acked <= consumed and time.time() < deadline:
        consume()
    c.close()
    return {"acked": sorted(acked), "consumed": sorted(consumed), "errors": errors[:10]}


def confluent_consume(a):
    from confluent_kafka import Consumer, KafkaException

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    c.subscribe([a.topic])
    values = []
    deadline = time.time() + 60
    try:
        while len(values) < a.n and time.time() < deadline:
            msgs = c.consume(num_messages=100, timeout=0.5)
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                values.append(m.value().decode())
            if msgs:
                c.commit(asynchronous=False)
    finally:
        c.close()
    return {"values": values}


def confluent_admin(a):
    from confluent_kafka.admin import AdminClient, NewTopic

    ad = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in ad.create_topics([NewTopic(a.topic, num_partitions=3, replication_factor=1)]).values():
        f.result(30)
    md = ad.list_topics(a.topic, timeout=30)
    partitions = len(md.topics[a.topic].partitions)
    for f in ad.delete_topics([a.topic]).values():
        f.result(30)
    deadline = time.time() + 10
    while a.topic in ad.list_topics(timeout=30).topics and time.time() < deadline:
        time.sleep(0.05)
    return {"partitions": partitions, "listed_after_delete": a.topic in ad.list_topics(timeout=30).topics}


def confluent_inspect(a):
    """With a group that consumed the topic and has no members left: list and
    describe the group and its offsets, describe the topic's configs, add a
    partition, look offsets up by time."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, ResourceType

    ad = AdminClient({"bootstrap.servers": a.bootstrap})
    listed = [g.group_id for g in ad.list_consumer_groups().result(30).valid]
    desc = ad.describe_consumer_groups([a.group])[a.group].result(30)
    offsets = ad.list_consumer_group_offsets([ConsumerGroupTopicPartitions(a.group)])[a.group].result(30)
    res = ConfigResource(ResourceType.TOPIC, a.topic)
    configs = ad.describe_configs([res])[res].result(30)
    for f in ad.create_partitions([NewPartitions(a.topic, 4)]).values():
        f.result(30)
    partitions = len(ad.list_topics(a.topic, timeout=30).topics[a.topic].partitions)
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group + "-lookups"})
    early = c.offsets_for_times([TopicPartition(a.topic, 0, 0)], timeout=30)[0]
    late = c.offsets_for_times([TopicPartition(a.topic, 0, int(time.time() * 1000) + 3600_000)], timeout=30)[0]
    c.close()
    return {
        "listed": a.group in listed,
        "state": desc.state.name,
        "members": len(desc.members),
        "committed": sum(tp.offset for tp in offsets.topic_partitions),
        "retention_ms": configs["retention.ms"].value if "retention.ms" in configs else "",
        "partitions": partitions,
        "offset_at_0": early.offset,
        "offset_in_an_hour": late.offset,
    }


def confluent_cooperative(a):
    """Two consumers of a group with the cooperative-sticky assignor, the
    second joining once the first has records; both read until they have
    a.n distinct records between them, committing synchronously."""
    from confluent_kafka import Consumer, KafkaError, KafkaException

    assigned = set()

    def member(name):
        c = Consumer({
            "bootstrap.servers": a.bootstrap, "group.id": a.group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
            "heartbeat.interval.ms": 200, "session.timeout.ms": 6000,
        })

        def on_assign(consumer, partitions):
            if partitions:
                assigned.add(name)

        c.subscribe([a.topic], on_assign=on_assign)
        return c

    values = []
    first = member("first")
    second = None
    deadline = time.time() + 60
    try:
        while len(set(values)) < a.n and time.time() < deadline:
            for c in [first] + ([second] if second else []):
                for m in c.consume(num_messages=20, timeout=0.05):
                    if m.error():
                        raise KafkaException(m.error())
                    values.append(m.value().decode())
                    try:
                        c.commit(message=m, asynchronous=False)
                    except KafkaException as e:
                        # Between the rounds of a cooperative rebalance a
                        # commit may be refused; the record comes again.
                        if "REBALANCE_IN_PROGRESS" not in str(e) and "ILLEGAL_GENERATION" not in str(e):
                            raise
            if second is None and values:
                second = member("second")
            time.sleep(0.02)
        # A commit refused between rebalance rounds is made good before
        # leaving, once the round is over.
        for c in [first] + ([second] if second else []):
            for _ in range(50):
                try:
                    c.commit(asynchronous=False)
                    break
                except KafkaException as e:
                    if e.args[0].code() == KafkaError._NO_OFFSET:
                        break
                    c.consume(num_messages=1, timeout=0.1)
    finally:
        first.close()
        if second:
            second.close()
    return {"members_assigned": len(assigned), "values": values}


def kafkapython_produce(a):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", enable_idempotence=True,
                      compression_type=None if a.compression == "none" else a.compression, linger_ms=5)
    futures = [p.send(a.topic, key=f"k{i % 5}".encode(), value=f"{a.prefix}-{i:03d}".encode(),
                      headers=[("i", str(i).encode())]) for i in range(a.n)]
    offsets = [f.get(timeout=60).offset for f in futures]
    p.close()
    return {"delivered": len(offsets)}


def kafkapython_consume(a):
    from kafka import KafkaConsumer

    c = KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
                      auto_offset_reset="earliest", enable_auto_commit=False)
    values = []
    deadline = time.time() + 60
    try:
        while len(values) < a.n and time.time() < deadline:
            batches = c.poll(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value.decode() for r in records)
            if batches:
                c.commit()
    finally:
        c.close()
    return {"values": values}


def kafkapython_pair(a):
    """Two consumers of a group (eager rebalancing: kafka-python has no
    cooperative assignor), the second joining once the first has records;
    both read until they have a.n distinct records between them, committing
    synchronously."""
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    def member():
        return KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             heartbeat_interval_ms=200, session_timeout_ms=6000, max_poll_records=20)

    members = [member()]
    assigned = set()
    values = []
    deadline = time.time() + 60
    try:
        while len(set(values)) < a.n and time.time() < deadline:
            for i, c in enumerate(members):
                batches = c.poll(timeout_ms=50)
                for records in batches.values():
                    values.extend(r.value.decode() for r in records)
                if c.assignment():
                    assigned.add(i)
                if batches:
                    try:
                        c.commit()
                    except (CommitFailedError, RebalanceInProgressError):
                        pass  # the group moved on; the records come again
            if len(members) == 1 and values:
                members.append(member())
            time.sleep(0.02)
        # A commit refused during a rebalance is made good before leaving.
        for c in members:
            for _ in range(50):
                try:
                    c.commit()
                    break
                except (CommitFailedError, RebalanceInProgressError):
                    c.poll(timeout_ms=100)
    finally:
        for c in members:
            c.close()
    return {"members_assigned": len(assigned), "values": values}


def kafkapython_admin(a):
    from kafka.admin import KafkaAdminClient, NewTopic

    ad = KafkaAdminClient(bootstrap_servers=a.bootstrap)
    ad.create_topics([NewTopic(a.topic, num_partitions=3, replication_factor=1)])
    described = ad.describe_topics([a.topic])
    partitions = len(described[0]["partitions"])
    ad.delete_topics([a.topic])
    listed = a.topic in ad.list_topics()
    ad.close()
    return {"partitions": partitions, "listed_after_delete": listed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("client", choices=["confluent", "kafkapython"])
    ap.add_argument("action", choices=["produce", "consume", "admin", "inspect", "cooperative", "transactions", "pair", "soak"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", default="")
    ap.add_argument("--prefix", default="m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    result = globals()[f"{a.client}_{a.action}"](a)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
