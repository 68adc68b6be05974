package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/rpcstatus"
)

// Ownership says which node coordinates the groups of a delivery shard.
type Ownership interface {
	// Shards is the number of delivery shards; 0 while the cluster's
	// description is not known yet.
	Shards() int32
	// ShardOwner returns the epoch in which this node owns a delivery
	// shard, or mine false with the owner ("" when none).
	ShardOwner(shard int32) (epoch int64, owner string, mine bool)
}

// Config of the coordinator.
type Config struct {
	// InitialRebalanceDelay holds the first rebalance of an empty group
	// this long, so that members starting together join one generation
	// (Kafka's group.initial.rebalance.delay.ms).
	InitialRebalanceDelay time.Duration
	// MinSessionTimeout and MaxSessionTimeout bound the session timeouts
	// members may ask for (group.min/max.session.timeout.ms).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// CheckpointBytes is how much a shard's log grows between two
	// checkpoints.
	CheckpointBytes int64
	// OffsetsRetention deletes an Empty group with its offsets this long
	// after it became empty and its last commit (Kafka's
	// offsets.retention.minutes); 0 keeps them forever.
	OffsetsRetention time.Duration
}

// Coordinator serves the groups of the delivery shards this node owns.
type Coordinator struct {
	cfg     Config
	storage storagev1.StorageServiceClient
	own     Ownership
	now     func() time.Time
	logger  *slog.Logger

	// ctx ends at Close: background writes (checkpoints, the metadata of
	// a group emptied by a timer) and loads stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	shards map[int32]*shard
	closed bool
	bg     sync.WaitGroup
}

// New returns a coordinator; nothing is loaded until a group is used.
func New(cfg Config, storage storagev1.StorageServiceClient, own Ownership, now func() time.Time, logger *slog.Logger) *Coordinator {
	if cfg.CheckpointBytes <= 0 {
		cfg.CheckpointBytes = 16 << 20
	}
	c := &Coordinator{cfg: cfg, storage: storage, own: own, now: now, logger: logger, shards: map[int32]*shard{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Close stops every group's timers and waits for background work.
func (c *Coordinator) Close() {
	c.cancel()
	c.mu.Lock()
	c.closed = true
	for _, sh := range c.shards {
		sh.close()
	}
	c.shards = map[int32]*shard{}
	c.mu.Unlock()
	c.bg.Wait()
}

// Key is the name of a group in the shard logs: groups are per project.
func Key(project, group string) string { return project + "/" + group }

// shardOf returns the delivery shard of a group. Until the number of
// shards is known no group has one: a guess would put its state in
// another shard's log.
func (c *Coordinator) shardOf(project, group string) (int32, error) {
	n := c.own.Shards()
	if n <= 0 {
		return 0, fmt.Errorf("%w: the cluster's delivery shards are not known yet", kerr.CoordinatorNotAvailable)
	}
	return placement.ShardOf(Key(project, group), n), nil
}

// Owner returns the node coordinating a group ("" when none right now).
func (c *Coordinator) Owner(project, group string) string {
	id, err := c.shardOf(project, group)
	if err != nil {
		return ""
	}
	_, owner, _ := c.own.ShardOwner(id)
	return owner
}

// loadWait is how long a request waits for its shard to load before it is
// answered COORDINATOR_LOAD_IN_PROGRESS, which the client retries: most
// loads take milliseconds, and a retry costs the client a backoff.
const loadWait = 2 * time.Second

// shard returns the loaded shard with this number, loading it when this
// node owns it in a newer epoch than the loaded one.
func (c *Coordinator) shard(ctx context.Context, id int32) (*shard, error) {
	epoch, owner, mine := c.own.ShardOwner(id)
	c.mu.Lock()
	sh := c.shards[id]
	if !mine {
		if sh != nil {
			sh.close()
			delete(c.shards, id)
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: the groups of delivery shard %d are coordinated by node %q", kerr.NotCoordinator, id, owner)
	}
	if c.closed {
		c.mu.Unlock()
		return nil, kerr.CoordinatorNotAvailable
	}
	if sh == nil || sh.epoch != epoch || sh.isClosed() {
		if sh != nil {
			sh.close()
		}
		sh = newShard(c, id, epoch)
		c.shards[id] = sh
		c.bg.Go(sh.load)
	}
	c.mu.Unlock()
	timer := time.NewTimer(loadWait)
	defer timer.Stop()
	select {
	case <-sh.loaded:
	case <-timer.C:
		return nil, fmt.Errorf("%w: delivery shard %d is loading", kerr.CoordinatorLoadInProgress, id)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if sh.loadErr != nil {
		// Dropped, so that the next request loads it again.
		c.mu.Lock()
		if c.shards[id] == sh {
			delete(c.shards, id)
		}
		c.mu.Unlock()
		return nil, sh.loadErr
	}
	return sh, nil
}

// lookup returns a group, creating it (Empty) when create is set; nil
// when it does not exist.
func (c *Coordinator) lookup(ctx context.Context, project, name string, create bool) (*group, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: a group id is required", kerr.InvalidGroupID)
	}
	id, err := c.shardOf(project, name)
	if err != nil {
		return nil, err
	}
	sh, err := c.shard(ctx, id)
	if err != nil {
		return nil, err
	}
	key := Key(project, name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	g := sh.groups[key]
	if g == nil && create {
		g = newGroup(sh, key, name)
		sh.groups[key] = g
	}
	return g, nil
}

// Listing is a group as ListGroups shows it.
type Listing struct {
	Group, ProtocolType string
	State               State
}

// List returns the groups of a project in the shards this node owns.
func (c *Coordinator) List(ctx context.Context, project string) ([]Listing, error) {
	var out []Listing
	prefix := project + "/"
	n := c.own.Shards()
	if n <= 0 {
		return nil, fmt.Errorf("%w: the cluster's delivery shards are not known yet", kerr.CoordinatorNotAvailable)
	}
	for id := range n {
		if _, _, mine := c.own.ShardOwner(id); !mine {
			continue
		}
		sh, err := c.shard(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, g := range sh.list() {
			if !strings.HasPrefix(g.key, prefix) {
				continue
			}
			g.mu.Lock()
			if g.state != Dead && !g.isShell() {
				out = append(out, Listing{Group: g.name, ProtocolType: g.protocolType, State: g.state})
			}
			g.mu.Unlock()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// storeError turns a failed write of the shard log into the Kafka error a
// client acts on: a fenced or moved owner is NOT_COORDINATOR (the client
// finds the coordinator again), anything else COORDINATOR_NOT_AVAILABLE,
// which it retries.
func storeError(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return err
	}
	switch rpcstatus.Reason(rpcstatus.Error(err)) {
	case errs.ErrFenced.Reason, errs.ErrNotLeader.Reason:
		return fmt.Errorf("%w: %v", kerr.NotCoordinator, err)
	}
	return fmt.Errorf("%w: %v", kerr.CoordinatorNotAvailable, err)
}

// Code returns the Kafka error code of an error of this package.
func Code(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}
