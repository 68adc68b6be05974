package amqp

import (
	"context"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/delivery"
)

// An unacked delivery is the channel's for as long as the channel lives, as
// in RabbitMQ, up to consumerTimeout: the deliveries are made with a short
// visibility timeout (leaseVisibility) that the channel extends every
// renewEvery while it holds them. When the channel closes they return at
// once (delivery.ExpireUnsettled); when the node dies they return within
// leaseVisibility, not at a long deadline.
const (
	leaseVisibility = delivery.MinVisibility // 15 s: the shortest the engine takes
	renewEvery      = leaseVisibility / 3
	// consumerTimeout is RabbitMQ's consumer_timeout default (30 min):
	// a delivery held longer is no longer extended, and returns to the
	// queue at its deadline.
	consumerTimeout = 30 * time.Minute
)

// renewLoop extends the channel's unacked deliveries until quit closes.
func (ch *channel) renewLoop(quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
			ch.renew()
		}
	}
}

func (ch *channel) renew() {
	type key struct {
		q *metadatav1.QueueRecord
		g *metadatav1.GroupRecord
	}
	now := time.Now()
	byGroup := map[key][]string{}
	ch.mu.Lock()
	for _, d := range ch.unacked {
		if now.Sub(d.at) > consumerTimeout {
			continue
		}
		k := key{d.aq.q, d.aq.g}
		byGroup[k] = append(byGroup[k], d.handle)
	}
	ch.mu.Unlock()
	ctx := context.WithoutCancel(ch.c.ctx)
	for k, handles := range byGroup {
		for len(handles) > 0 {
			n := min(len(handles), delivery.MaxReceiveMessages)
			// A handle settled meanwhile is refused, harmlessly.
			if _, err := ch.c.srv.deps.Delivery.ChangeVisibility(ctx, k.q, k.g, handles[:n], leaseVisibility); err != nil {
				ch.c.srv.logger.Warn("amqp: extending unacked deliveries failed", "queue", k.q.GetDisplayName(), "err", err)
			}
			handles = handles[n:]
		}
	}
}
