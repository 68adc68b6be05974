package dms

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/loadtest/bench"
)

// GRPC is the dms-grpc driver: unary SendMessages, ReceiveMessages and
// AckMessages of the dms.v1 API, one connection per producer and consumer.
type GRPC struct {
	target
}

// NewGRPC returns the dms-grpc driver.
func NewGRPC(cfg Config) *GRPC { return &GRPC{target{cfg: cfg}} }

var _ bench.Driver = (*GRPC)(nil)

// Setup implements bench.Driver.
func (d *GRPC) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	info, err := d.setup(ctx, w)
	info.System = "DMS (gRPC, unary)"
	info.MaxSendBatch, info.MaxReceiveBatch = 1000, 1000 // the dms.v1 limits
	return info, err
}

// Teardown implements bench.Driver.
func (d *GRPC) Teardown(ctx context.Context) error { return d.teardown(ctx) }

// NewProducer implements bench.Driver.
func (d *GRPC) NewProducer(context.Context) (bench.Producer, error) {
	conn, err := dial(d.grpcAddr)
	if err != nil {
		return nil, err
	}
	return &grpcProducer{conn: conn, client: dmsv1.NewProducerServiceClient(conn), queue: d.queue.GetName()}, nil
}

// NewConsumer implements bench.Driver.
func (d *GRPC) NewConsumer(context.Context) (bench.Consumer, error) {
	conn, err := dial(d.grpcAddr)
	if err != nil {
		return nil, err
	}
	return &grpcConsumer{conn: conn, client: dmsv1.NewConsumerServiceClient(conn), group: d.group.GetName(),
		wait: durationpb.New(d.wait)}, nil
}

type grpcProducer struct {
	conn   *grpc.ClientConn
	client dmsv1.ProducerServiceClient
	queue  string
	msgs   []*dmsv1.Message // reused: a request is marshalled before the call returns
}

func (p *grpcProducer) Send(ctx context.Context, bodies [][]byte) error {
	for len(p.msgs) < len(bodies) {
		p.msgs = append(p.msgs, &dmsv1.Message{})
	}
	msgs := p.msgs[:len(bodies)]
	for i, b := range bodies {
		msgs[i].Body = b
	}
	resp, err := p.client.SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: p.queue, Messages: msgs})
	if err != nil {
		return err
	}
	if n := len(resp.GetResults()); n != len(bodies) {
		return fmt.Errorf("dms: %d results for %d messages", n, len(bodies))
	}
	return nil
}

func (p *grpcProducer) Close() error { return p.conn.Close() }

type grpcConsumer struct {
	conn   *grpc.ClientConn
	client dmsv1.ConsumerServiceClient
	group  string
	wait   *durationpb.Duration
	acks   []*dmsv1.Ack
}

func (c *grpcConsumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	resp, err := c.client.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{
		Group:       c.group,
		MaxMessages: int32(max),
		WaitTime:    c.wait,
	})
	if err != nil {
		return nil, err
	}
	ds := make([]bench.Delivery, len(resp.GetMessages()))
	for i, m := range resp.GetMessages() {
		ds[i] = bench.Delivery{Body: m.GetMessage().GetBody(), Token: m.GetReceiptHandle()}
	}
	return ds, nil
}

func (c *grpcConsumer) Ack(ctx context.Context, ds []bench.Delivery) error {
	for len(c.acks) < len(ds) {
		c.acks = append(c.acks, &dmsv1.Ack{})
	}
	acks := c.acks[:len(ds)]
	for i, d := range ds {
		acks[i].ReceiptHandle = d.Token.(string)
	}
	resp, err := c.client.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: c.group, Acks: acks})
	if err != nil {
		return err
	}
	for _, r := range resp.GetResults() {
		if !r.GetApplied() {
			return fmt.Errorf("dms: ack not applied: %s: %s", r.GetErrorReason(), r.GetErrorMessage())
		}
	}
	return nil
}

func (c *grpcConsumer) Close() error { return c.conn.Close() }
