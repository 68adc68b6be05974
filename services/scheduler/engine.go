// Package scheduler is the scheduler role: the owner of everything that
// waits for a time. Its timers are split into shards, and each shard has one
// active owner elected through etcd, so a standby process takes over when the
// owner's lease dies. Delayed messages and retry backoff are the timers it
// will own; until they land, the role holds its elections and reports them.
package scheduler

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"sync"

	"go.etcd.io/etcd/client/v3/concurrency"

	schedulerv1 "github.com/opendms/dms/gen/go/dms/scheduler/v1"
	"github.com/opendms/dms/services/catalog"
)

// Config of the scheduler role.
type Config struct {
	Shards int `yaml:"shards"`
}

// RegisterFlags registers the flags of the scheduler role.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.Shards, "scheduler.shards", 1, "Number of timer shards, each with one elected owner.")
}

// Scheduler campaigns for the ownership of its shards.
type Scheduler struct {
	schedulerv1.UnimplementedSchedulerServiceServer

	cfg      Config
	session  *concurrency.Session
	memberID string
	logger   *slog.Logger

	mu    sync.Mutex
	owned map[int]bool
}

// New returns a scheduler that campaigns with the process's etcd session.
func New(cfg Config, session *concurrency.Session, memberID string, logger *slog.Logger) *Scheduler {
	return &Scheduler{cfg: cfg, session: session, memberID: memberID, logger: logger, owned: map[int]bool{}}
}

func electionKey(shard int) string {
	return fmt.Sprintf("%sscheduler/%d", catalog.ElectionPrefix, shard)
}

// Start campaigns for every shard in the background until ctx ends; a shard
// is owned from the moment the campaign wins until the session is lost.
func (s *Scheduler) Start(ctx context.Context) {
	for shard := range s.cfg.Shards {
		go func() {
			election := concurrency.NewElection(s.session, electionKey(shard))
			if err := election.Campaign(ctx, s.memberID); err != nil {
				if ctx.Err() == nil {
					s.logger.Error("scheduler campaign failed", "shard", shard, "err", err)
				}
				return
			}
			s.setOwned(shard, true)
			s.logger.Info("scheduler shard owned", "shard", shard)
			select {
			case <-ctx.Done():
				_ = election.Resign(context.Background())
			case <-s.session.Done():
			}
			s.setOwned(shard, false)
		}()
	}
}

func (s *Scheduler) setOwned(shard int, owned bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owned[shard] = owned
}

// GetStatus implements dms.scheduler.v1.SchedulerService.
func (s *Scheduler) GetStatus(context.Context, *schedulerv1.GetStatusRequest) (*schedulerv1.GetStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &schedulerv1.GetStatusResponse{}
	for shard := range s.cfg.Shards {
		out.Shards = append(out.Shards, &schedulerv1.ShardStatus{Shard: int32(shard), Owner: s.owned[shard], ElectionKey: electionKey(shard)})
	}
	return out, nil
}
