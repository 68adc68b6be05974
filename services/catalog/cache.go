package catalog

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// EventKind says what changed in the catalog.
type EventKind int

// The kinds of catalog change.
const (
	QueuePut EventKind = iota
	QueueDeleted
	GroupPut
	GroupDeleted
)

// Event is one change of the catalog seen by the cache.
type Event struct {
	Kind    EventKind
	QueueID string
	GroupID string // group events only
}

// Cache is a local copy of the catalog kept current by an etcd watch. Lookups
// of something the cache does not hold yet (a queue created a moment ago
// through another process) fall back to one read from etcd, so a client that
// creates a queue and sends to it at once is never told it does not exist.
type Cache struct {
	cli    *clientv3.Client
	logger *slog.Logger

	mu          sync.RWMutex
	queues      map[string]*metadatav1.QueueRecord
	queueByName map[string]string                             // project/name → queue id
	groups      map[string]map[string]*metadatav1.GroupRecord // queue id → group id → record
	groupByName map[string]string                             // queue id/name → group id
	createdAt   map[string]int64                              // record key → etcd create revision, the true creation order
	quotas      map[string]*dmsv1.ProjectQuotas               // project → its own quotas (0 fields: the defaults)
	listeners   []func(Event)

	revision int64         // etcd revision the cache reflects
	advanced chan struct{} // closed and replaced when revision grows
}

// NewCache returns an empty cache; Start fills it.
func NewCache(cli *clientv3.Client, logger *slog.Logger) *Cache {
	return &Cache{
		cli:         cli,
		logger:      logger,
		queues:      map[string]*metadatav1.QueueRecord{},
		queueByName: map[string]string{},
		groups:      map[string]map[string]*metadatav1.GroupRecord{},
		groupByName: map[string]string{},
		createdAt:   map[string]int64{},
		quotas:      map[string]*dmsv1.ProjectQuotas{},
		advanced:    make(chan struct{}),
	}
}

// WaitForRevision blocks until the cache reflects etcd revision rev, so that
// whoever changed the catalog reads its own write from the cache.
func (c *Cache) WaitForRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		current, advanced := c.revision, c.advanced
		c.mu.RUnlock()
		if current >= rev {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Cache) setRevision(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.revision {
		c.revision = rev
		close(c.advanced)
		c.advanced = make(chan struct{})
	}
}

// Subscribe registers fn to be called after every change the watch applies.
// fn runs on the watch goroutine and must not block.
func (c *Cache) Subscribe(fn func(Event)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners = append(c.listeners, fn)
}

// Start loads the whole catalog, then keeps it current until ctx ends.
func (c *Cache) Start(ctx context.Context) error {
	rev, err := c.reload(ctx)
	if err != nil {
		return err
	}
	go c.watchLoop(ctx, rev)
	return nil
}

func (c *Cache) watchLoop(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				c.logger.Warn("catalog watch interrupted; reloading", "err", err)
				break
			}
			for _, ev := range resp.Events {
				c.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.CreateRevision, ev.Type == clientv3.EventTypeDelete)
			}
			rev = resp.Header.Revision
			c.setRevision(rev)
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if r, err := c.reload(ctx); err == nil {
			rev = r
		}
	}
}

// reload replaces the cache with a fresh read and reports what disappeared.
func (c *Cache) reload(ctx context.Context) (int64, error) {
	resp, err := c.cli.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, errs.Wrapf(errs.ErrUnavailable, "catalog: reading etcd: %v", err)
	}
	fresh := NewCache(c.cli, c.logger)
	for _, kv := range resp.Kvs {
		fresh.apply(string(kv.Key), kv.Value, kv.CreateRevision, false)
	}
	c.mu.Lock()
	var gone []Event
	for id, groups := range c.groups {
		for gid := range groups {
			if fresh.groups[id][gid] == nil {
				gone = append(gone, Event{Kind: GroupDeleted, QueueID: id, GroupID: gid})
			}
		}
	}
	for id := range c.queues {
		if fresh.queues[id] == nil {
			gone = append(gone, Event{Kind: QueueDeleted, QueueID: id})
		}
	}
	c.queues, c.queueByName, c.groups, c.groupByName, c.createdAt = fresh.queues, fresh.queueByName, fresh.groups, fresh.groupByName, fresh.createdAt
	c.quotas = fresh.quotas
	listeners := c.listeners
	c.mu.Unlock()
	for _, ev := range gone {
		for _, fn := range listeners {
			fn(ev)
		}
	}
	c.setRevision(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// apply folds one key change into the cache and tells the listeners.
func (c *Cache) apply(key string, value []byte, createRevision int64, deleted bool) {
	var ev Event
	c.mu.Lock()
	if deleted {
		delete(c.createdAt, key)
	} else {
		c.createdAt[key] = createRevision
	}
	switch {
	case strings.HasPrefix(key, queuePrefix):
		id := strings.TrimPrefix(key, queuePrefix)
		if old := c.queues[id]; old != nil {
			delete(c.queueByName, old.GetProject()+"/"+old.GetDisplayName())
		}
		ev = Event{Kind: QueueDeleted, QueueID: id}
		delete(c.queues, id)
		if !deleted {
			rec := &metadatav1.QueueRecord{}
			if err := proto.Unmarshal(value, rec); err != nil {
				c.mu.Unlock()
				c.logger.Error("catalog: undecodable queue record", "key", key, "err", err)
				return
			}
			c.queues[id] = rec
			c.queueByName[rec.GetProject()+"/"+rec.GetDisplayName()] = id
			ev.Kind = QueuePut
		}
	case strings.HasPrefix(key, groupPrefix):
		queueID, groupID, ok := strings.Cut(strings.TrimPrefix(key, groupPrefix), "/")
		if !ok {
			c.mu.Unlock()
			return
		}
		if old := c.groups[queueID][groupID]; old != nil {
			delete(c.groupByName, queueID+"/"+old.GetDisplayName())
			delete(c.groups[queueID], groupID)
		}
		ev = Event{Kind: GroupDeleted, QueueID: queueID, GroupID: groupID}
		if !deleted {
			rec := &metadatav1.GroupRecord{}
			if err := proto.Unmarshal(value, rec); err != nil {
				c.mu.Unlock()
				c.logger.Error("catalog: undecodable group record", "key", key, "err", err)
				return
			}
			if c.groups[queueID] == nil {
				c.groups[queueID] = map[string]*metadatav1.GroupRecord{}
			}
			c.groups[queueID][groupID] = rec
			c.groupByName[queueID+"/"+rec.GetDisplayName()] = groupID
			ev.Kind = GroupPut
		} else if len(c.groups[queueID]) == 0 {
			delete(c.groups, queueID)
		}
	case strings.HasPrefix(key, quotaPrefix):
		project := strings.TrimPrefix(key, quotaPrefix)
		delete(c.quotas, project)
		if !deleted {
			rec := &dmsv1.ProjectQuotas{}
			if err := proto.Unmarshal(value, rec); err != nil {
				c.logger.Error("catalog: undecodable project quotas", "key", key, "err", err)
			} else {
				c.quotas[project] = rec
			}
		}
		c.mu.Unlock()
		return // no listener cares yet
	default:
		c.mu.Unlock()
		return // name reservations and counters are the metadata role's business
	}
	listeners := c.listeners
	c.mu.Unlock()
	for _, fn := range listeners {
		fn(ev)
	}
}

// ResolveQueue finds a queue of a project by id or display name. A queue
// that does not exist is ErrQueueNotFound; an etcd that cannot be asked is
// ErrUnavailable, never "not found".
func (c *Cache) ResolveQueue(ctx context.Context, project, ref string) (*metadatav1.QueueRecord, error) {
	var q *metadatav1.QueueRecord
	if IsQueueID(ref) {
		found, err := c.QueueByID(ctx, ref)
		if err != nil && !IsNotFound(err) {
			return nil, err
		}
		q = found
	}
	if q == nil {
		c.mu.RLock()
		id := c.queueByName[project+"/"+ref]
		c.mu.RUnlock()
		if id == "" {
			var err error
			if id, err = c.fetchString(ctx, QueueNameKey(project, ref)); err != nil {
				return nil, err
			}
		}
		if id != "" {
			found, err := c.QueueByID(ctx, id)
			if err != nil && !IsNotFound(err) {
				return nil, err
			}
			q = found
		}
	}
	if q == nil || q.GetProject() != project {
		return nil, errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found in project %q", ref, project)
	}
	return q, nil
}

// CachedQueue returns a queue by id from the cache only, never asking
// etcd: for metrics on hot paths.
func (c *Cache) CachedQueue(id string) (*metadatav1.QueueRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	q := c.queues[id]
	return q, q != nil
}

// QueueByID finds a queue by id in any project.
func (c *Cache) QueueByID(ctx context.Context, id string) (*metadatav1.QueueRecord, error) {
	c.mu.RLock()
	q := c.queues[id]
	c.mu.RUnlock()
	if q != nil {
		return q, nil
	}
	q = &metadatav1.QueueRecord{}
	found, err := c.fetchRecord(ctx, QueueKey(id), q)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", id)
	}
	return q, nil
}

// ResolveGroup finds a consumer group of a queue by id or display name.
func (c *Cache) ResolveGroup(ctx context.Context, q *metadatav1.QueueRecord, ref string) (*metadatav1.GroupRecord, error) {
	c.mu.RLock()
	g := c.groups[q.GetId()][ref]
	if g == nil {
		g = c.groups[q.GetId()][c.groupByName[q.GetId()+"/"+ref]]
	}
	c.mu.RUnlock()
	if g != nil {
		return g, nil
	}
	id := ref
	if !IsGroupID(ref) {
		var err error
		if id, err = c.fetchString(ctx, GroupNameKey(q.GetId(), ref)); err != nil {
			return nil, err
		}
	}
	if id != "" {
		rec := &metadatav1.GroupRecord{}
		found, err := c.fetchRecord(ctx, GroupKey(q.GetId(), id), rec)
		if err != nil {
			return nil, err
		}
		if found {
			return rec, nil
		}
	}
	return nil, errs.Wrapf(errs.ErrGroupNotFound, "consumer group %q not found on queue %q", ref, q.GetDisplayName())
}

// IsNotFound reports whether err says for sure that a queue or group does
// not exist (as opposed to the catalog not being reachable).
func IsNotFound(err error) bool {
	return errors.Is(err, errs.ErrQueueNotFound) || errors.Is(err, errs.ErrGroupNotFound)
}

// QueueTombstone reports whether the catalog remembers deleting a queue.
// It reads etcd, so it is for rare checks (a storage node that was down
// while queues were deleted), not for requests.
func (c *Cache) QueueTombstone(ctx context.Context, queueID string) (bool, error) {
	v, err := c.fetchString(ctx, DeletedQueueKey(queueID))
	return v != "", err
}

// GroupTombstone reports whether the catalog remembers deleting a group.
func (c *Cache) GroupTombstone(ctx context.Context, queueID, groupID string) (bool, error) {
	v, err := c.fetchString(ctx, DeletedGroupKey(queueID, groupID))
	return v != "", err
}

// Queues returns the queues of a project, oldest first.
func (c *Cache) Queues(project string) []*metadatav1.QueueRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*metadatav1.QueueRecord
	for _, q := range c.queues {
		if project == "" || q.GetProject() == project {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *metadatav1.QueueRecord) int {
		return cmp.Or(cmp.Compare(c.createdAt[QueueKey(a.GetId())], c.createdAt[QueueKey(b.GetId())]), cmp.Compare(a.GetId(), b.GetId()))
	})
	return out
}

// Groups returns the consumer groups of a queue, oldest first.
func (c *Cache) Groups(queueID string) []*metadatav1.GroupRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*metadatav1.GroupRecord, 0, len(c.groups[queueID]))
	for _, g := range c.groups[queueID] {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *metadatav1.GroupRecord) int {
		return cmp.Or(cmp.Compare(c.createdAt[GroupKey(a.GetQueueId(), a.GetId())], c.createdAt[GroupKey(b.GetQueueId(), b.GetId())]), cmp.Compare(a.GetId(), b.GetId()))
	})
	return out
}

// fetchString reads one key; "" when it does not exist.
func (c *Cache) fetchString(ctx context.Context, key string) (string, error) {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return "", errs.Wrapf(errs.ErrUnavailable, "catalog: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// fetchRecord reads one record; found is false when the key does not exist.
// A record that does not decode is an error, not an absence.
func (c *Cache) fetchRecord(ctx context.Context, key string, into proto.Message) (found bool, err error) {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return false, errs.Wrapf(errs.ErrUnavailable, "catalog: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	if err := proto.Unmarshal(resp.Kvs[0].Value, into); err != nil {
		return false, errs.Wrapf(errs.ErrInternal, "catalog: %s holds an undecodable record: %v", key, err)
	}
	return true, nil
}

// ResolveQueueName finds the queue a resource name
// `projects/{project}/queues/{queue}` refers to.
func (c *Cache) ResolveQueueName(ctx context.Context, name string) (*metadatav1.QueueRecord, error) {
	qn, err := ParseQueueName(name)
	if err != nil {
		return nil, err
	}
	return c.ResolveQueue(ctx, qn.Project, qn.Queue)
}

// ResolveGroupName finds the queue and consumer group a resource name
// `projects/{project}/queues/{queue}/groups/{group}` refers to.
func (c *Cache) ResolveGroupName(ctx context.Context, name string) (*metadatav1.QueueRecord, *metadatav1.GroupRecord, error) {
	gn, err := ParseGroupName(name)
	if err != nil {
		return nil, nil, err
	}
	q, err := c.ResolveQueue(ctx, gn.Project, gn.Queue)
	if err != nil {
		return nil, nil, err
	}
	g, err := c.ResolveGroup(ctx, q, gn.Group)
	return q, g, err
}

// ProjectQuotas returns the project's own quotas: fields at 0 take the
// server's defaults; nil when the project has none of its own.
func (c *Cache) ProjectQuotas(project string) *dmsv1.ProjectQuotas {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.quotas[project]
}
