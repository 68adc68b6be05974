package amqp

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/opendms/dms/services/testserver/testetcd"
)

// TestTopologyWatchSurvivesCompaction: a watch that fell behind etcd's
// compaction reads the topology again and goes on, instead of asking for
// the compacted revision for ever.
func TestTopologyWatchSurvivesCompaction(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{testetcd.Start(t)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(name string) int64 {
		v, _ := json.Marshal(exchangeRec{})
		resp, err := cli.Put(ctx, topologyPrefix+"p/exchanges/"+name, string(v))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	first := put("x1")
	put("x2")
	last := put("x3")
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	topo := newTopology(cli, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// As if the watch had been behind since before the compaction.
	wctx, stop := context.WithCancel(ctx)
	topo.done = make(chan struct{})
	go topo.watch(wctx, first)
	defer func() { stop(); <-topo.done }()
	later := put("x4")
	if err := topo.waitRev(ctx, later); err != nil {
		t.Fatalf("the watch did not get past the compaction: %v", err)
	}
	topo.mu.RLock()
	defer topo.mu.RUnlock()
	for _, name := range []string{"x1", "x2", "x3", "x4"} {
		if topo.exchanges["p/"+name] == nil {
			t.Errorf("exchange %s is not in the reloaded topology", name)
		}
	}
}
