package dms

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/kafka"
)

// kafkaBatchBytes is the largest record batch dms-kafka producers send and
// the dmsd it starts takes (-kafka.max-message-bytes): as close to the
// kafka driver's 8 MiB as the front end allows (storage's 8 MiB batch
// limit less room for its own header).
const kafkaBatchBytes = 8<<20 - 1024

// Kafka is the dms-kafka driver: the kafka driver's franz-go producers and
// consumer group (same settings, same workload) against dmsd's Kafka
// listener. Topics are KAFKA_HA queues for -durability sync (answered once
// fsynced on the in-sync replicas) and KAFKA_HT for async.
type Kafka struct {
	cfg    Config
	server *Server
	inner  *kafka.Driver
}

// NewKafka returns the dms-kafka driver.
func NewKafka(cfg Config) *Kafka { return &Kafka{cfg: cfg} }

var (
	_ bench.Driver         = (*Kafka)(nil)
	_ bench.BacklogSkipper = (*Kafka)(nil)
)

// Setup implements bench.Driver.
func (k *Kafka) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	info := bench.SetupInfo{System: "DMS through its Kafka listener", ServerPID: k.cfg.PID}
	addr := k.cfg.KafkaAddr
	if k.cfg.GRPCAddr == "" {
		if k.cfg.Launcher == nil {
			return info, errors.New("no dmsd address and no launcher")
		}
		// No initial rebalance delay, as peers/kafka.sh sets
		// group.initial.rebalance.delay.ms=0 for Kafka.
		server, err := k.cfg.Launcher.Start(ctx, "-kafka.max-message-bytes", strconv.Itoa(kafkaBatchBytes), "-kafka.group-initial-rebalance-delay", "0s")
		if err != nil {
			return info, err
		}
		k.server, addr, info.ServerPID = server, server.KafkaAddr, server.PID
		info.Notes = append(info.Notes, "fresh dmsd (all roles, embedded etcd) on 127.0.0.1, data in a temp dir, no initial rebalance delay (as the Kafka peer)")
	}
	if addr == "" {
		return info, errors.New("no Kafka address of the dmsd (-dms-kafka, or a dmsd that prints kafka= when it starts)")
	}
	mode := "KAFKA_HA"
	info.Durability = "fsync before ack (KAFKA_HA topic: acks=all answered once fsynced on the in-sync replicas)"
	if w.Durability == bench.Async {
		mode = "KAFKA_HT"
		info.Durability = "ack before fsync (KAFKA_HT topic: answered after the leader's write, flushed in the background)"
	}
	rf := int16(-1)
	if k.cfg.ReplicationFactor > 0 {
		rf = int16(k.cfg.ReplicationFactor)
	}
	k.inner = kafka.New(kafka.Config{Brokers: []string{addr}, Target: &kafka.Target{
		Info: info, TopicConfigs: map[string]*string{"dms.queue.mode": &mode}, MaxBatchBytes: kafkaBatchBytes, ReplicationFactor: rf,
	}})
	out, err := k.inner.Setup(ctx, w)
	if err != nil {
		return out, fmt.Errorf("dms-kafka: %w", err)
	}
	return out, nil
}

// NewProducer implements bench.Driver.
func (k *Kafka) NewProducer(ctx context.Context) (bench.Producer, error) {
	return k.inner.NewProducer(ctx)
}

// NewConsumer implements bench.Driver.
func (k *Kafka) NewConsumer(ctx context.Context) (bench.Consumer, error) {
	return k.inner.NewConsumer(ctx)
}

// SkipBacklog implements bench.BacklogSkipper.
func (k *Kafka) SkipBacklog(ctx context.Context) error { return k.inner.SkipBacklog(ctx) }

// Teardown implements bench.Driver.
func (k *Kafka) Teardown(ctx context.Context) error {
	var errs []error
	if k.inner != nil {
		errs = append(errs, k.inner.Teardown(ctx))
	}
	if k.server != nil {
		errs = append(errs, k.server.Stop())
	}
	k.inner, k.server = nil, nil
	return errors.Join(errs...)
}
