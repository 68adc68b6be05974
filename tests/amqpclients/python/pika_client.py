"""pika scenarios against dmsd's AMQP listener (tests/amqpclients).

usage: pika_client.py blocking|select HOST:PORT QUEUE

Each scenario prints one JSON object on stdout; any failure raises (exit 1).
"""
import json
import sys

import pika


def params(addr):
    host, port = addr.rsplit(":", 1)
    return pika.ConnectionParameters(host=host, port=int(port), virtual_host="/",
                                     credentials=pika.PlainCredentials("guest", "guest"),
                                     heartbeat=30, blocked_connection_timeout=30)


def blocking(addr, queue):
    conn = pika.BlockingConnection(params(addr))
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 5})
    ch.confirm_delivery()  # pika refuses without publisher_confirms and basic.nack
    n = 20
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(
            content_type="text/plain", delivery_mode=2, message_id=str(i),
            headers={"i": i, "dms-tags": "pika"}), mandatory=True)
    unroutable = False
    try:
        ch.basic_publish("", queue + "-missing", b"x", mandatory=True)
    except pika.exceptions.UnroutableError:
        unroutable = True
    ch.basic_qos(prefetch_count=5)
    got, redelivered = [], 0
    nacked = False
    for method, props, body in ch.consume(queue, inactivity_timeout=30):
        if method is None:
            raise SystemExit("no delivery within 30 s")
        if not nacked and body == b"m3":
            nacked = True
            ch.basic_nack(method.delivery_tag, requeue=True)
            continue
        if method.redelivered:
            redelivered += 1
        assert props.content_type == "text/plain", props
        assert props.headers["dms-tags"] == "pika", props.headers
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)
        if len(got) == n:
            break
    ch.cancel()
    ch.basic_publish("", queue, b"by-get")
    method, props, body = ch.basic_get(queue, auto_ack=True)
    declared = ch.queue_declare(queue=queue, passive=True)
    conn.close()
    print(json.dumps({"received": sorted(got), "redelivered": redelivered, "unroutable": unroutable,
                      "get": body.decode() if body else None, "left": declared.method.message_count}))


def select(addr, queue):
    result = {"published": 0, "acked": 0, "received": 0}
    n = 50

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        def declared(_frame):
            ch.confirm_delivery(on_confirm)
            for i in range(n):
                ch.basic_publish("", queue, f"s{i}".encode(), pika.BasicProperties(delivery_mode=2))
                result["published"] += 1

        def on_confirm(frame):
            if isinstance(frame.method, pika.spec.Basic.Ack):
                result["acked"] = frame.method.delivery_tag if frame.method.multiple else result["acked"] + 1
            if result["acked"] >= n and "consuming" not in result:
                result["consuming"] = True
                ch.basic_qos(prefetch_count=10, callback=lambda _f: ch.basic_consume(queue, on_message))

        def on_message(c, method, _props, _body):
            c.basic_ack(method.delivery_tag)
            result["received"] += 1
            if result["received"] == n:
                c.connection.close()

        ch.queue_declare(queue=queue, durable=True, callback=declared)

    conn = pika.SelectConnection(params(addr), on_open_callback=on_open,
                                 on_open_error_callback=lambda _c, e: (_ for _ in ()).throw(SystemExit(str(e))))
    conn.ioloop.call_later(60, conn.ioloop.stop)
    conn.add_on_close_callback(lambda _c, _r: conn.ioloop.stop())
    conn.ioloop.start()
    result.pop("consuming", None)
    print(json.dumps(result))


if __name__ == "__main__":
    {"blocking": blocking, "select": select}[sys.argv[1]](sys.argv[2], sys.argv[3])
