package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// producerIDKey holds the next producer id no node has taken yet, in
// decimal. Ids are handed out in blocks so that etcd is written once per
// thousand producers; a block a node took and did not use is skipped,
// never handed out twice (ids are never reused: storage tells producers
// apart by id alone).
const producerIDKey = "/dms/kafka/next-producer-id"

// producerIDBlock is how many ids a node takes at once.
const producerIDBlock = 1000

// producerIDs allocates Kafka producer ids unique in the cluster.
type producerIDs struct {
	cli *clientv3.Client

	mu         sync.Mutex
	next, last int64 // the node's block: next is free, last is its end (exclusive)
}

func newProducerIDs(cli *clientv3.Client) *producerIDs { return &producerIDs{cli: cli} }

// take returns a producer id never handed out before.
func (p *producerIDs) take(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == p.last {
		first, err := p.reserve(ctx)
		if err != nil {
			return 0, err
		}
		p.next, p.last = first, first+producerIDBlock
	}
	id := p.next
	p.next++
	return id, nil
}

// reserve takes the next block in etcd by compare-and-swap.
func (p *producerIDs) reserve(ctx context.Context) (int64, error) {
	for {
		resp, err := p.cli.Get(ctx, producerIDKey)
		if err != nil {
			return 0, fmt.Errorf("kafka: reading the producer id counter: %w", err)
		}
		var first int64
		cmp := clientv3.Compare(clientv3.CreateRevision(producerIDKey), "=", 0)
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			if first, err = strconv.ParseInt(string(kv.Value), 10, 64); err != nil {
				return 0, fmt.Errorf("kafka: the producer id counter %s holds %q, not a number", producerIDKey, kv.Value)
			}
			cmp = clientv3.Compare(clientv3.ModRevision(producerIDKey), "=", kv.ModRevision)
		}
		txn, err := p.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(producerIDKey, strconv.FormatInt(first+producerIDBlock, 10))).Commit()
		if err != nil {
			return 0, fmt.Errorf("kafka: taking a block of producer ids: %w", err)
		}
		if txn.Succeeded {
			return first, nil
		}
	}
}
