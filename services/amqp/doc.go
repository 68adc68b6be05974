// Package amqp is the AMQP 0-9-1 front end: a listener that speaks
// RabbitMQ's protocol to unchanged RabbitMQ clients (amqp091-go, pika, the
// Java amqp-client, ...) and translates each method into calls of the roles,
// keeping no messages of its own.
//
// The codec is generated (package wire, from the specification's XML by
// wire/amqpgen); this package holds the semantics:
//
//   - conn.go: the protocol header, connection.start/tune/open (PLAIN and
//     AMQPLAIN; with authentication off every connection acts in
//     -protocols.default-project, which is the vhost "/"), heartbeats,
//     connection.close with the spec's reply codes.
//   - auth.go: with authentication on, the login (a DMS user and password,
//     the vhost naming the project) and the authorization of every method
//     by services/authz.
//   - channel.go: channels, content assembly, channel exceptions (soft
//     reply codes close the channel, hard ones the connection).
//   - queues.go: queue.declare/bind/unbind/purge/delete and
//     exchange.declare/delete. An AMQP queue is a DMS queue (mode AMQP, one
//     partition, so that it keeps one order) of the same name, consumed
//     through its consumer group "amqp".
//   - topology.go: exchanges, bindings and queue arguments, kept in etcd
//     beside the catalog with a watch-fed cache on every node; routing
//     (default, direct, fanout, topic, headers) reads memory only.
//   - publish.go: basic.publish → ingest, batched per channel, publisher
//     confirms once ingest answers (durable as the queue's mode demands),
//     mandatory → basic.return before the confirm; content properties are
//     kept as attributes (headers as attributes of their own; the exact
//     properties in amqp.properties); header dms-tags ↔ DMS tags.
//   - consume.go: basic.consume is a delivery.Session with credits = the
//     basic.qos prefetch, credits returned on settle, unacked deliveries
//     returned at once when the channel closes; basic.get is one receive;
//     ack/nack/reject map to SUCCESS/FAIL and are applied in the background
//     by the channel's settler, many per state-log write (a later
//     synchronous method waits for them, so methods take effect in order).
//   - lease.go: an unacked delivery is held for the channel's life (a 15 s
//     visibility extended every 5 s, up to RabbitMQ's 30 min consumer
//     timeout), so that a crash returns it within 15 s.
//   - deadletter.go: x-dead-letter-exchange for rejected, expired and
//     overflowed messages, with x-death headers; maxlength.go: x-max-length
//     with x-overflow drop-head or reject-publish; expiry.go: x-expires;
//     blocked.go: connection.blocked while storage is full.
package amqp
