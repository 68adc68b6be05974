// Package amqpclients runs unchanged AMQP 0-9-1 clients against a real
// dmsd, each through one scenario: pika (blocking and select connections),
// kombu (py-amqp underneath, as Celery), RabbitMQ's Java amqp-client and
// amqp091-go. The differential test runs every scenario against Debian's
// rabbitmq-server as well and compares what the clients saw. run.sh
// installs the clients and RabbitMQ, pinned, and runs the tests; without it
// the client tests fail, saying so, and the differential test is skipped.
// amqp091-go's finer tests (bad input, dead-lettering, TTL, x-expires,
// connection.blocked, authorization) live beside the front end in
// services/amqp.
package amqpclients
