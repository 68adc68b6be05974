// Package kafka is the dms-bench driver of Apache Kafka (franz-go): a topic
// with the workload's partitions and replication factor 1, idempotent
// producers with acks=all that send each batch as one flush, and consumers
// in one consumer group that commit each received batch synchronously.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/peer"
)

// Config of the driver.
type Config struct {
	Brokers  []string
	PeersDir string
	// Target, when set, is a broker other than peers/kafka.sh's (DMS's
	// Kafka front end): it says how to create the topic for a workload and
	// replaces what the driver reads from the peers' state.
	Target *Target
}

// Target describes a Kafka-protocol server that is not Apache Kafka.
type Target struct {
	// Info is the system, durability, notes and server pid to report.
	Info bench.SetupInfo
	// TopicConfigs are the configs of the workload's topic.
	TopicConfigs map[string]*string
	// MaxBatchBytes is the largest record batch the server takes.
	MaxBatchBytes int
	// ReplicationFactor of the topic; -1 takes the server's default.
	ReplicationFactor int16
}

// Driver is the kafka driver.
type Driver struct {
	cfg   Config
	admin *kgo.Client
	topic string
	group string
	w     bench.Workload
}

// New returns the kafka driver.
func New(cfg Config) *Driver { return &Driver{cfg: cfg} }

var (
	_ bench.Driver         = (*Driver)(nil)
	_ bench.BacklogSkipper = (*Driver)(nil)
)

var seq atomic.Int64

// maxBatchBytes lets a batch of 1000 1 KiB or 100 16 KiB messages go as one
// record batch; peers/kafka.sh sets message.max.bytes to match.
const maxBatchBytes = 8 << 20

// Setup implements bench.Driver.
func (d *Driver) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	state := peer.ReadState(d.cfg.PeersDir, "kafka")
	info := bench.SetupInfo{ServerPID: state.PID, System: "Apache Kafka (KRaft, single node)"}
	if v := state.Version; v != "" {
		info.System = "Apache Kafka " + v + " (KRaft, single node)"
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.cfg.Brokers...))
	if err != nil {
		return info, err
	}
	d.admin, d.w = cl, w
	if t := d.cfg.Target; t != nil {
		return d.setupTarget(ctx, w, t)
	}
	// flush.messages is the topic's own log.flush.interval.messages, so the
	// topic's durability does not depend on how the broker was started; the
	// broker setting still decides for the consumer offsets topic.
	flush := "1"
	info.Durability = "fsync before ack (acks=all, topic flush.messages=1)"
	if w.Durability == bench.Async {
		flush = strconv.FormatInt(1<<63-1, 10)
		info.Durability = "ack before fsync (acks=all, flushing left to the OS)"
	}
	if state.Durability != "" && state.Durability != w.Durability {
		info.Notes = append(info.Notes, fmt.Sprintf("broker started with durability %s: offset commits follow it", state.Durability))
	}
	info.Notes = append(info.Notes,
		"idempotent producer, no compression, each send batch flushed as one produce request and awaited",
		"consumer group, one synchronous offset commit per received batch")
	n := strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
	d.topic, d.group = "bench-"+n, "bench-"+n
	_, err = kadm.NewClient(cl).CreateTopic(ctx, int32(w.Partitions), 1, map[string]*string{
		"flush.messages":      &flush,
		"min.insync.replicas": new("1"),
		"max.message.bytes":   new(strconv.Itoa(maxBatchBytes)),
	}, d.topic)
	if err != nil {
		d.topic = ""
		return info, fmt.Errorf("creating topic on %s: %w", strings.Join(d.cfg.Brokers, ","), err)
	}
	return info, nil
}

// setupTarget creates the workload's topic on a server that is not Apache
// Kafka, with the target's configs.
func (d *Driver) setupTarget(ctx context.Context, w bench.Workload, t *Target) (bench.SetupInfo, error) {
	info := t.Info
	info.Notes = append(info.Notes,
		"idempotent producer, no compression, each send batch flushed as one produce request and awaited",
		"consumer group, one synchronous offset commit per received batch")
	n := strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
	d.topic, d.group = "bench-"+n, "bench-"+n
	if _, err := kadm.NewClient(d.admin).CreateTopic(ctx, int32(w.Partitions), t.ReplicationFactor, t.TopicConfigs, d.topic); err != nil {
		d.topic = ""
		return info, fmt.Errorf("creating topic on %s: %w", strings.Join(d.cfg.Brokers, ","), err)
	}
	return info, nil
}

// batchBytes is the largest record batch producers send.
func (d *Driver) batchBytes() int32 {
	if d.cfg.Target != nil && d.cfg.Target.MaxBatchBytes > 0 {
		return int32(d.cfg.Target.MaxBatchBytes)
	}
	return maxBatchBytes
}

// Teardown implements bench.Driver.
func (d *Driver) Teardown(ctx context.Context) error {
	if d.admin == nil {
		return nil
	}
	var err error
	if d.topic != "" {
		_, err = kadm.NewClient(d.admin).DeleteTopic(ctx, d.topic)
	}
	d.admin.Close()
	d.admin = nil
	return err
}

// NewProducer implements bench.Driver: a client of its own.
func (d *Driver) NewProducer(context.Context) (bench.Producer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(d.cfg.Brokers...),
		kgo.DefaultProduceTopic(d.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(d.batchBytes()),
		// A send is one batch sent at once (Flush), as with the other drivers,
		// rather than records lingering for a batch to fill.
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(max(10000, 2*d.w.Batch)),
	)
	if err != nil {
		return nil, err
	}
	return &producer{cl: cl}, nil
}

type producer struct {
	cl *kgo.Client
}

func (p *producer) Send(ctx context.Context, bodies [][]byte) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(len(bodies))
	for _, b := range bodies {
		p.cl.Produce(ctx, &kgo.Record{Value: b}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmp(firstErr, err)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	if err := p.cl.Flush(ctx); err != nil {
		return err
	}
	wg.Wait()
	return firstErr
}

// cmp keeps the first error.
func cmp(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

func (p *producer) Close() error {
	p.cl.Close()
	return nil
}

// SkipBacklog implements bench.BacklogSkipper: consumers made from now on
// join a new group whose committed offsets are the current end of every
// partition.
func (d *Driver) SkipBacklog(ctx context.Context) error {
	adm := kadm.NewClient(d.admin)
	ends, err := adm.ListEndOffsets(ctx, d.topic)
	if err != nil {
		return err
	}
	if err := ends.Error(); err != nil {
		return err
	}
	group := d.group + "-top"
	if err := adm.CommitAllOffsets(ctx, group, ends.Offsets()); err != nil {
		return fmt.Errorf("committing the end offsets for group %s: %w", group, err)
	}
	d.group = group
	return nil
}

// NewConsumer implements bench.Driver: a group member of its own.
func (d *Driver) NewConsumer(context.Context) (bench.Consumer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(d.cfg.Brokers...),
		kgo.ConsumerGroup(d.group),
		kgo.ConsumeTopics(d.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(d.w.ReceiveWait),
	)
	if err != nil {
		return nil, err
	}
	return &consumer{cl: cl, wait: d.w.ReceiveWait}, nil
}

type consumer struct {
	cl   *kgo.Client
	wait time.Duration
}

func (c *consumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	pollCtx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	fetches := c.cl.PollRecords(pollCtx, max)
	var errs []error
	fetches.EachError(func(_ string, _ int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	})
	var ds []bench.Delivery
	fetches.EachRecord(func(r *kgo.Record) {
		ds = append(ds, bench.Delivery{Body: r.Value, Token: r})
	})
	if len(ds) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ds, nil
}

func (c *consumer) Ack(ctx context.Context, ds []bench.Delivery) error {
	records := make([]*kgo.Record, len(ds))
	for i, d := range ds {
		records[i] = d.Token.(*kgo.Record)
	}
	return c.cl.CommitRecords(ctx, records...)
}

func (c *consumer) Close() error {
	c.cl.Close()
	return nil
}
