// Package jetstream is the dms-bench driver of NATS JetStream (nats.go's
// jetstream API): a file-backed stream with one replica, a durable pull
// consumer with explicit acks shared by all consumers.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/peer"
)

// Config of the driver.
type Config struct {
	URL string
	// PeersDir is where peers/nats.sh keeps its state (pid, durability).
	PeersDir string
}

// Driver is the nats driver.
type Driver struct {
	cfg     Config
	admin   *nats.Conn
	stream  string
	subject string
	durable string // the pull consumer the driver's consumers share
	w       bench.Workload
}

// New returns the nats driver.
func New(cfg Config) *Driver { return &Driver{cfg: cfg} }

var (
	_ bench.Driver         = (*Driver)(nil)
	_ bench.BacklogSkipper = (*Driver)(nil)
)

var seq atomic.Int64

// Setup implements bench.Driver.
func (d *Driver) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	state := peer.ReadState(d.cfg.PeersDir, "nats")
	info := bench.SetupInfo{ServerPID: state.PID}
	if err := state.CheckDurability(w.Durability); err != nil {
		return info, err
	}
	nc, err := nats.Connect(d.cfg.URL, nats.Name("dms-bench admin"))
	if err != nil {
		return info, fmt.Errorf("connecting to %s: %w", d.cfg.URL, err)
	}
	d.admin, d.w = nc, w
	info.System = "NATS JetStream " + nc.ConnectedServerVersion()
	info.Durability = state.Describe(
		"fsync before ack (sync_interval: always)",
		"ack before fsync (default sync_interval, 2 min)")
	info.Notes = append(info.Notes,
		"file stream, 1 replica; durable pull consumer, explicit per-message acks (not awaited); partitions do not apply",
		"producers publish a batch with PublishAsync and wait for every PubAck")
	n := strconv.FormatInt(time.Now().UnixMilli(), 36) + "_" + strconv.FormatInt(seq.Add(1), 10)
	d.stream, d.subject = "BENCH_"+n, "bench."+n
	jsc, err := js.New(nc)
	if err != nil {
		return info, err
	}
	_, err = jsc.CreateStream(ctx, js.StreamConfig{
		Name:     d.stream,
		Subjects: []string{d.subject},
		Storage:  js.FileStorage,
		Replicas: 1,
	})
	if err != nil {
		return info, fmt.Errorf("creating stream: %w", err)
	}
	if err := d.createConsumer(ctx, "bench", js.DeliverAllPolicy); err != nil {
		return info, err
	}
	return info, nil
}

func (d *Driver) createConsumer(ctx context.Context, durable string, policy js.DeliverPolicy) error {
	jsc, err := js.New(d.admin)
	if err != nil {
		return err
	}
	_, err = jsc.CreateOrUpdateConsumer(ctx, d.stream, js.ConsumerConfig{
		Durable:       durable,
		DeliverPolicy: policy,
		AckPolicy:     js.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("creating consumer %s: %w", durable, err)
	}
	d.durable = durable
	return nil
}

// SkipBacklog implements bench.BacklogSkipper: a second durable consumer
// that delivers only messages published from now on.
func (d *Driver) SkipBacklog(ctx context.Context) error {
	return d.createConsumer(ctx, "bench-top", js.DeliverNewPolicy)
}

// Teardown implements bench.Driver.
func (d *Driver) Teardown(ctx context.Context) error {
	if d.admin == nil {
		return nil
	}
	var errs []error
	if d.stream != "" {
		if jsc, err := js.New(d.admin); err == nil {
			if err := jsc.DeleteStream(ctx, d.stream); err != nil && !errors.Is(err, js.ErrStreamNotFound) {
				errs = append(errs, err)
			}
		}
	}
	d.admin.Close()
	d.admin = nil
	return errors.Join(errs...)
}

// NewProducer implements bench.Driver: a connection of its own.
func (d *Driver) NewProducer(context.Context) (bench.Producer, error) {
	nc, err := nats.Connect(d.cfg.URL, nats.Name("dms-bench producer"))
	if err != nil {
		return nil, err
	}
	jsc, err := js.New(nc, js.WithPublishAsyncMaxPending(max(4096, 2*d.w.Batch)))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &producer{nc: nc, js: jsc, subject: d.subject}, nil
}

type producer struct {
	nc      *nats.Conn
	js      js.JetStream
	subject string
	futures []js.PubAckFuture
}

func (p *producer) Send(ctx context.Context, bodies [][]byte) error {
	p.futures = p.futures[:0]
	for _, b := range bodies {
		// PublishAsync copies the body into the connection's buffer.
		f, err := p.js.PublishAsync(p.subject, b)
		if err != nil {
			return err
		}
		p.futures = append(p.futures, f)
	}
	for _, f := range p.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *producer) Close() error {
	p.nc.Close()
	return nil
}

// NewConsumer implements bench.Driver: a connection of its own that pulls
// continuously (nats.go's Consume), so that a receive takes what has
// arrived, like a streaming consumer.
func (d *Driver) NewConsumer(ctx context.Context) (bench.Consumer, error) {
	nc, err := nats.Connect(d.cfg.URL, nats.Name("dms-bench consumer"))
	if err != nil {
		return nil, err
	}
	jsc, err := js.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	cons, err := jsc.Consumer(ctx, d.stream, d.durable)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &consumer{nc: nc, msgs: make(chan js.Msg, 2*d.w.ReceiveMax), done: make(chan struct{}), wait: d.w.ReceiveWait}
	c.cc, err = cons.Consume(func(m js.Msg) {
		select {
		case c.msgs <- m:
		case <-c.done:
		}
	}, js.PullMaxMessages(2*d.w.ReceiveMax))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

type consumer struct {
	nc   *nats.Conn
	cc   js.ConsumeContext
	msgs chan js.Msg
	done chan struct{}
	wait time.Duration
}

func (c *consumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	return peer.Gather(ctx, c.msgs, max, c.wait, func(m js.Msg) bench.Delivery {
		return bench.Delivery{Body: m.Data(), Token: m}
	})
}

func (c *consumer) Ack(_ context.Context, ds []bench.Delivery) error {
	for _, d := range ds {
		if err := d.Token.(js.Msg).Ack(); err != nil {
			return err
		}
	}
	return nil
}

func (c *consumer) Close() error {
	close(c.done)
	c.cc.Stop()
	c.nc.Close()
	return nil
}
