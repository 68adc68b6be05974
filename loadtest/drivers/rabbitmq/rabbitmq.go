// Package rabbitmq is the dms-bench driver of RabbitMQ over AMQP 0-9-1
// (amqp091-go): a durable quorum or classic queue, persistent messages,
// publisher confirms, and consumers with a prefetch window that ack each
// received batch with one multiple-ack.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/peer"
)

// QueueType is the kind of RabbitMQ queue.
type QueueType string

// The queue types benchmarked.
const (
	Quorum  QueueType = "quorum"
	Classic QueueType = "classic"
)

// Config of the driver.
type Config struct {
	URL      string
	Type     QueueType
	PeersDir string
	// Target, when set, is another AMQP 0-9-1 server than the RabbitMQ
	// peer (dms-amqp: dmsd's AMQP listener), described by its Info.
	Target *bench.SetupInfo
}

// Driver is the rabbitmq-quorum or rabbitmq-classic driver.
type Driver struct {
	cfg   Config
	admin *amqp.Connection
	queue string
	w     bench.Workload
}

// New returns the driver for cfg.Type queues.
func New(cfg Config) *Driver { return &Driver{cfg: cfg} }

var _ bench.Driver = (*Driver)(nil)

var seq atomic.Int64

// Setup implements bench.Driver.
func (d *Driver) Setup(_ context.Context, w bench.Workload) (bench.SetupInfo, error) {
	var info bench.SetupInfo
	if d.cfg.Target == nil {
		info.ServerPID = peer.ReadState(d.cfg.PeersDir, "rabbitmq").PID
	} else {
		info = *d.cfg.Target
	}
	conn, err := amqp.Dial(d.cfg.URL)
	if err != nil {
		return info, fmt.Errorf("connecting to %s: %w", d.cfg.URL, err)
	}
	d.admin, d.w = conn, w
	version, _ := conn.Properties["version"].(string)
	if d.cfg.Target == nil {
		info.System = "RabbitMQ " + version + " (" + string(d.cfg.Type) + " queue)"
	}
	switch {
	case d.cfg.Target != nil:
	case d.cfg.Type == Quorum:
		info.Durability = "fsync before confirm (quorum queue: Raft log fsynced)"
	default:
		info.Durability = "fsync before confirm (classic durable queue, persistent messages; fsyncs batched by the server)"
	}
	if w.Durability == bench.Async && d.cfg.Target == nil {
		info.Notes = append(info.Notes, "RabbitMQ has no confirm-before-fsync mode for persistent messages: run fsync before confirm")
	}
	info.Notes = append(info.Notes,
		"producers publish a batch and wait for every publisher confirm; consumers: prefetch 2x receive-max, one multiple-ack per batch (not awaited); partitions do not apply")
	ch, err := conn.Channel()
	if err != nil {
		return info, err
	}
	defer ch.Close()
	d.queue = "bench-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
	if _, err := ch.QueueDeclare(d.queue, true, false, false, false, amqp.Table{"x-queue-type": string(d.cfg.Type)}); err != nil {
		return info, fmt.Errorf("declaring queue: %w", err)
	}
	return info, nil
}

// Teardown implements bench.Driver.
func (d *Driver) Teardown(context.Context) error {
	if d.admin == nil {
		return nil
	}
	var errs []error
	if d.queue != "" {
		if ch, err := d.admin.Channel(); err == nil {
			_, err := ch.QueueDelete(d.queue, false, false, false)
			errs = append(errs, err, ch.Close())
		}
	}
	errs = append(errs, d.admin.Close())
	d.admin = nil
	return errors.Join(errs...)
}

// NewProducer implements bench.Driver: a connection and channel of its own
// in confirm mode.
func (d *Driver) NewProducer(context.Context) (bench.Producer, error) {
	conn, err := amqp.Dial(d.cfg.URL)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &producer{conn: conn, ch: ch, queue: d.queue}, nil
}

type producer struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	queue    string
	confirms []*amqp.DeferredConfirmation
}

func (p *producer) Send(ctx context.Context, bodies [][]byte) error {
	p.confirms = p.confirms[:0]
	for _, b := range bodies {
		// The frame is written before Publish returns, so the body can be reused.
		c, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", p.queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			Body:         b,
		})
		if err != nil {
			return err
		}
		p.confirms = append(p.confirms, c)
	}
	for _, c := range p.confirms {
		acked, err := c.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !acked {
			return errors.New("rabbitmq: publish nacked")
		}
	}
	return nil
}

func (p *producer) Close() error {
	p.ch.Close()
	return p.conn.Close()
}

// NewConsumer implements bench.Driver: a connection and channel of its own
// with a prefetch of twice the receive batch.
func (d *Driver) NewConsumer(context.Context) (bench.Consumer, error) {
	conn, err := amqp.Dial(d.cfg.URL)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(2*d.w.ReceiveMax, 0, false)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(d.queue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &consumer{conn: conn, ch: ch, deliveries: deliveries, wait: d.w.ReceiveWait}, nil
}

type consumer struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	wait       time.Duration
}

func (c *consumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	return peer.Gather(ctx, c.deliveries, max, c.wait, func(m amqp.Delivery) bench.Delivery {
		return bench.Delivery{Body: m.Body, Token: m.DeliveryTag}
	})
}

// Ack acks the batch with one multiple-ack of its last delivery tag: the
// channel delivers in tag order and is used by this consumer alone.
func (c *consumer) Ack(_ context.Context, ds []bench.Delivery) error {
	return c.ch.Ack(ds[len(ds)-1].Token.(uint64), true)
}

func (c *consumer) Close() error {
	c.ch.Close()
	return c.conn.Close()
}
