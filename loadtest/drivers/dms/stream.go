package dms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/loadtest/bench"
)

// streamCredits is how many messages a streaming consumer lets the server
// send ahead of its acks.
const streamCredits = 4000

// Stream is the dms-stream driver: producers as dms-grpc, consumers on the
// bidirectional Subscribe stream with flow-control credits, acking in
// batches of handles on the same stream and granting a credit per ack.
type Stream struct {
	GRPC
}

// NewStream returns the dms-stream driver.
func NewStream(cfg Config) *Stream { return &Stream{GRPC{target{cfg: cfg}}} }

var _ bench.Driver = (*Stream)(nil)

// Setup implements bench.Driver.
func (d *Stream) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	info, err := d.GRPC.Setup(ctx, w)
	info.System = "DMS (gRPC, streaming Subscribe)"
	info.Notes = append(info.Notes, fmt.Sprintf("consumers: Subscribe with %d credits, acks by handle on the stream, one credit back per ack", streamCredits))
	return info, err
}

// NewConsumer implements bench.Driver.
func (d *Stream) NewConsumer(context.Context) (bench.Consumer, error) {
	conn, err := dial(d.grpcAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := dmsv1.NewConsumerServiceClient(conn).Subscribe(ctx)
	if err == nil {
		err = stream.Send(&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: d.group.GetName(), Credits: streamCredits}})
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	c := &streamConsumer{conn: conn, stream: stream, cancel: cancel, wait: d.wait, arrived: make(chan struct{}, 1)}
	go c.read()
	return c, nil
}

type streamConsumer struct {
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[dmsv1.SubscribeRequest, dmsv1.SubscribeResponse]
	cancel context.CancelFunc
	wait   time.Duration

	mu       sync.Mutex
	buffered []*dmsv1.ReceivedMessage
	err      error // the stream's end or a refused ack
	arrived  chan struct{}
}

// read moves what the server sends into the buffer until the stream ends.
func (c *streamConsumer) read() {
	for {
		resp, err := c.stream.Recv()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.mu.Unlock()
			c.signal()
			return
		}
		c.buffered = append(c.buffered, resp.GetMessages()...)
		for _, r := range resp.GetAckResults() {
			if !r.GetApplied() && c.err == nil {
				c.err = fmt.Errorf("dms: ack not applied: %s: %s", r.GetErrorReason(), r.GetErrorMessage())
			}
		}
		c.mu.Unlock()
		c.signal()
	}
}

func (c *streamConsumer) signal() {
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// Receive returns what the stream has buffered, waiting up to the
// workload's receive wait for something to arrive.
func (c *streamConsumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	deadline := time.NewTimer(c.wait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.buffered) > 0 {
			n := min(max, len(c.buffered))
			ds := make([]bench.Delivery, n)
			for i, m := range c.buffered[:n] {
				ds[i] = bench.Delivery{Body: m.GetMessage().GetBody(), Token: m.GetReceiptHandle()}
			}
			c.buffered = c.buffered[n:]
			c.mu.Unlock()
			return ds, nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-c.arrived:
		case <-deadline.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Ack sends the handles on the stream with as many new credits.
func (c *streamConsumer) Ack(_ context.Context, ds []bench.Delivery) error {
	acks := make([]*dmsv1.Ack, len(ds))
	for i, d := range ds {
		acks[i] = &dmsv1.Ack{ReceiptHandle: d.Token.(string)}
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.stream.Send(&dmsv1.SubscribeRequest{Acks: acks, Credits: int32(len(ds))})
}

func (c *streamConsumer) Close() error {
	err := c.stream.CloseSend()
	c.cancel()
	return errors.Join(err, c.conn.Close())
}
