package dms

import (
	"context"
	"errors"
	"fmt"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/rabbitmq"
)

// AMQP is the dms-amqp driver: the rabbitmq driver's amqp091-go producers
// (persistent messages, publisher confirms) and consumers (prefetch, one
// multiple-ack per batch), same settings and workload, against dmsd's AMQP
// 0-9-1 listener. Queues are declared with x-queue-type quorum, which DMS
// takes as any AMQP queue: one partition, confirmed once fsynced (on the
// in-sync replicas in a cluster).
type AMQP struct {
	cfg    Config
	server *Server
	inner  *rabbitmq.Driver
}

// NewAMQP returns the dms-amqp driver.
func NewAMQP(cfg Config) *AMQP { return &AMQP{cfg: cfg} }

var _ bench.Driver = (*AMQP)(nil)

// Setup implements bench.Driver.
func (a *AMQP) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	info := bench.SetupInfo{System: "DMS through its AMQP 0-9-1 listener", ServerPID: a.cfg.PID,
		Durability: "fsync before confirm (AMQP queue: publisher confirms once durable)"}
	addr := a.cfg.AMQPAddr
	if a.cfg.GRPCAddr == "" {
		if a.cfg.Launcher == nil {
			return info, errors.New("no dmsd address and no launcher")
		}
		server, err := a.cfg.Launcher.Start(ctx)
		if err != nil {
			return info, err
		}
		a.server, addr, info.ServerPID = server, server.AMQPAddr, server.PID
		info.Notes = append(info.Notes, "fresh dmsd (all roles, embedded etcd) on 127.0.0.1, data in a temp dir")
	}
	if addr == "" {
		return info, errors.New("no AMQP address of the dmsd (-dms-amqp, or a dmsd that prints amqp= when it starts)")
	}
	if w.Durability == bench.Async {
		info.Notes = append(info.Notes, "AMQP queues have no confirm-before-fsync mode: run fsync before confirm")
	}
	a.inner = rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@" + addr + "/", Type: rabbitmq.Quorum, Target: &info})
	out, err := a.inner.Setup(ctx, w)
	if err != nil {
		return out, fmt.Errorf("dms-amqp: %w", err)
	}
	return out, nil
}

// NewProducer implements bench.Driver.
func (a *AMQP) NewProducer(ctx context.Context) (bench.Producer, error) {
	return a.inner.NewProducer(ctx)
}

// NewConsumer implements bench.Driver.
func (a *AMQP) NewConsumer(ctx context.Context) (bench.Consumer, error) {
	return a.inner.NewConsumer(ctx)
}

// Teardown implements bench.Driver.
func (a *AMQP) Teardown(ctx context.Context) error {
	var errs []error
	if a.inner != nil {
		errs = append(errs, a.inner.Teardown(ctx))
	}
	if a.server != nil {
		errs = append(errs, a.server.Stop())
	}
	a.inner, a.server = nil, nil
	return errors.Join(errs...)
}
