"""kombu scenario (the pyamqp transport: py-amqp underneath, as Celery uses
it) against an AMQP 0-9-1 broker (tests/amqpclients).

usage: kombu_client.py HOST:PORT NAME

Declares a topic exchange NAME-ex and a durable queue NAME bound to it by
orders.#, publishes 10 JSON messages with publisher confirms
(transport_options confirm_publish), one mandatory message that routes
nowhere (returned before its confirm, to the producer's on_return), consumes
with prefetch 4, requeueing the first delivery once (it comes back
redelivered) and acking the rest, then a basic.get through SimpleQueue and a
passive declare. Prints one JSON object on stdout; any failure raises.
"""
import json
import socket
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue


def main(addr, name):
    host, port = addr.rsplit(":", 1)
    conn = Connection(hostname=host, port=int(port), userid="guest", password="guest", virtual_host="/",
                      transport="pyamqp", transport_options={"confirm_publish": True}, heartbeat=0)
    conn.connect()
    exchange = Exchange(name + "-ex", type="topic", durable=True)
    queue = Queue(name, exchange, routing_key="orders.#", durable=True,
                  queue_arguments={"x-queue-type": "quorum"})
    returned = []
    channel = conn.channel()
    producer = Producer(channel, on_return=lambda exc, ex, key, msg: returned.append(key))
    queue(channel).declare()
    n = 10
    for i in range(n):
        producer.publish({"n": i}, exchange=exchange, routing_key="orders.new", serializer="json",
                         headers={"i": i}, delivery_mode=2)
    producer.publish({"lost": True}, exchange=exchange, routing_key="invoices.new", mandatory=True,
                     serializer="json")

    got, redelivered, requeued = [], 0, False

    def on_message(body, message):
        nonlocal requeued, redelivered
        if message.delivery_info.get("redelivered"):
            redelivered += 1
        if not requeued:
            requeued = True
            message.requeue()
            return
        got.append(body["n"])
        message.ack()

    with Consumer(conn.channel(), queues=[queue], callbacks=[on_message], prefetch_count=4):
        while len(got) < n:
            try:
                conn.drain_events(timeout=30)
            except socket.timeout:
                raise SystemExit(f"no delivery within 30 s; got {sorted(got)}")

    producer.publish({"n": "by-get"}, exchange=exchange, routing_key="orders.get", serializer="json")
    simple = conn.SimpleQueue(queue)
    message = simple.get(block=True, timeout=30)
    by_get = message.payload["n"]
    message.ack()
    _, left, _ = queue(conn.channel()).queue_declare(passive=True)
    simple.close()
    conn.release()
    print(json.dumps({"Received": sorted(got), "Redelivered": redelivered, "Returned": returned,
                      "Get": by_get, "Left": left}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
