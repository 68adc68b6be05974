// Package amqpclients runs unchanged AMQP 0-9-1 clients other than
// amqp091-go (whose tests live beside the front end, in services/amqp)
// against a real dmsd: pika (blocking and select connections) and
// RabbitMQ's Java amqp-client. run.sh installs them, pinned, and runs the
// tests; without it the tests fail, saying so.
package amqpclients
