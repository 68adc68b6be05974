package datakeys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Prefix is the etcd prefix of the data key records, one per project.
const Prefix = "/dms/data-keys/"

// FirstKeyID is the first id of the data key range; master keys use the
// ids below it. A project's first data key is FirstKeyID+1.
const FirstKeyID uint32 = 1 << 31

const keySize = 32 // AES-256

// casAttempts bounds the compare-and-swap retries of one change: two nodes
// racing for a project's first key settle in one retry.
const casAttempts = 16

func recordKey(project string) string { return Prefix + project }

// additionalData binds a wrapped key to its project and id.
func additionalData(project string, id uint32) []byte {
	return fmt.Appendf(nil, "dms data key v1\x00%s\x00%d", project, id)
}

// Manager keeps the unwrapped data keys of the projects this process uses,
// current through an etcd watch, and makes, rotates and destroys them.
// Unwrapped keys live only in memory.
type Manager struct {
	cli      *clientv3.Client
	provider KeyProvider // nil: encryption at rest is off
	now      func() time.Time
	logger   *slog.Logger

	mu        sync.Mutex
	projects  map[string]*projectKeys
	listeners []func(project string)
}

// projectKeys is one project's record as this process last saw it.
type projectKeys struct {
	rev  int64 // mod revision of the record; 0: no record
	rec  *storagev1.ProjectDataKeys
	keys []partitionlog.Key // unwrapped rec.keys, oldest first
}

// NewManager returns a manager over cli; provider nil turns encryption at
// rest off (every method then answers as for a project without keys, and
// Rotate fails with ErrEncryptionNotConfigured).
func NewManager(cli *clientv3.Client, provider KeyProvider, now func() time.Time, logger *slog.Logger) *Manager {
	return &Manager{cli: cli, provider: provider, now: now, logger: logger, projects: map[string]*projectKeys{}}
}

// Enabled reports whether encryption at rest is on.
func (m *Manager) Enabled() bool { return m != nil && m.provider != nil }

// Subscribe registers fn, called (on the watch goroutine or the caller's)
// whenever the keys of a project this process holds change. fn must not
// block.
func (m *Manager) Subscribe(fn func(project string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listeners = append(m.listeners, fn)
}

// Start watches the records until ctx ends, so that a rotation or destroy
// made through any node reaches this one.
func (m *Manager) Start(ctx context.Context) error {
	if !m.Enabled() {
		return nil
	}
	resp, err := m.cli.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "datakeys: reading etcd: %v", err)
	}
	go m.watchLoop(ctx, resp.Header.Revision)
	return nil
}

func (m *Manager) watchLoop(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		wch := m.cli.Watch(clientv3.WithRequireLeader(ctx), Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				m.logger.Warn("datakeys: watch interrupted; reloading", "err", err)
				break
			}
			for _, ev := range resp.Events {
				project := strings.TrimPrefix(string(ev.Kv.Key), Prefix)
				if !m.holds(project) {
					continue // loaded from etcd on first use
				}
				rec := &storagev1.ProjectDataKeys{}
				if ev.Type == clientv3.EventTypePut {
					if err := proto.Unmarshal(ev.Kv.Value, rec); err != nil {
						m.logger.Error("datakeys: unreadable data key record", "project", project, "err", err)
						continue
					}
				}
				if _, err := m.install(ctx, project, ev.Kv.ModRevision, rec); err != nil {
					m.logger.Error("datakeys: unwrapping a project's data keys", "project", project, "err", err)
				}
			}
			rev = resp.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		// Whatever changed while the watch was down: reload what is held.
		m.mu.Lock()
		held := make([]string, 0, len(m.projects))
		for p := range m.projects {
			held = append(held, p)
		}
		m.mu.Unlock()
		for _, p := range held {
			if _, err := m.load(ctx, p); err != nil {
				m.logger.Warn("datakeys: reloading a project's data keys", "project", p, "err", err)
			}
		}
		if resp, err := m.cli.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
			rev = resp.Header.Revision
		}
	}
}

func (m *Manager) holds(project string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.projects[project]
	return ok
}

// Keys returns the project's data keys, oldest first (the last one seals
// new data), making the first one if the project has none and create is
// set. With encryption off it returns none.
func (m *Manager) Keys(ctx context.Context, project string, create bool) ([]partitionlog.Key, error) {
	if !m.Enabled() {
		return nil, nil
	}
	m.mu.Lock()
	pk := m.projects[project]
	m.mu.Unlock()
	if pk == nil {
		var err error
		if pk, err = m.load(ctx, project); err != nil {
			return nil, err
		}
	}
	if len(pk.keys) > 0 || !create {
		return slices.Clone(pk.keys), nil
	}
	pk, _, err := m.change(ctx, project, func(rec *storagev1.ProjectDataKeys) (bool, error) {
		if len(rec.GetKeys()) > 0 {
			return false, nil // another node made it first
		}
		return true, m.addKey(ctx, project, rec)
	})
	if err != nil {
		return nil, err
	}
	return slices.Clone(pk.keys), nil
}

// Refresh rereads the project's keys from etcd, for a caller that met a
// key id it does not hold before the watch brought it; subscribers hear of
// a change.
func (m *Manager) Refresh(ctx context.Context, project string) error {
	if !m.Enabled() {
		return nil
	}
	_, err := m.load(ctx, project)
	return err
}

// Record returns the project's stored record (nil if it has none).
func (m *Manager) Record(ctx context.Context, project string) (*storagev1.ProjectDataKeys, error) {
	if !m.Enabled() {
		return nil, nil
	}
	pk, err := m.load(ctx, project)
	if err != nil {
		return nil, err
	}
	return pk.rec, nil
}

// Rotate makes a new data key the project's active one and returns it.
func (m *Manager) Rotate(ctx context.Context, project string) (*storagev1.WrappedDataKey, error) {
	if !m.Enabled() {
		return nil, errs.Wrapf(errs.ErrEncryptionNotConfigured, "encryption at rest is off: there are no data keys to rotate; give dmsd -storage.encryption-key-file to turn it on")
	}
	pk, _, err := m.change(ctx, project, func(rec *storagev1.ProjectDataKeys) (bool, error) {
		return true, m.addKey(ctx, project, rec)
	})
	if err != nil {
		return nil, err
	}
	return pk.rec.GetKeys()[len(pk.rec.GetKeys())-1], nil
}

// Destroy destroys every data key of the project and returns them (without
// material). It fails with ErrDataKeysInUse while the catalog counts
// queues in the project; the check and the destroy are one transaction, so
// a queue created meanwhile makes it fail rather than lose its key.
func (m *Manager) Destroy(ctx context.Context, project string) ([]*storagev1.WrappedDataKey, error) {
	if !m.Enabled() {
		return nil, nil
	}
	countKey := catalog.QueueCountKey(project)
	var destroyed []*storagev1.WrappedDataKey
	_, rev, err := m.change(ctx, project, func(rec *storagev1.ProjectDataKeys) (bool, error) {
		destroyed = nil
		if len(rec.GetKeys()) == 0 {
			return false, nil
		}
		now := timestamppb.New(m.now())
		for _, k := range rec.GetKeys() {
			d := &storagev1.WrappedDataKey{Id: k.GetId(), Provider: k.GetProvider(), KekId: k.GetKekId(), CreateTime: k.GetCreateTime(), DestroyTime: now}
			destroyed = append(destroyed, d)
			rec.Destroyed = append(rec.Destroyed, d)
		}
		rec.Keys = nil
		return true, nil
	}, guard{key: countKey, check: func(v []byte) error {
		if n, _ := strconv.Atoi(string(v)); n > 0 {
			return errs.Wrapf(errs.ErrDataKeysInUse, "project %s still has %d queue(s); delete them before destroying its data keys", project, n)
		}
		return nil
	}})
	if err != nil {
		return nil, err
	}
	if rev > 0 {
		// Earlier versions of the record hold the wrapped keys: compact
		// them away. A later compaction done meanwhile covers them too.
		if _, err := m.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "compacted") {
			return destroyed, errs.Wrapf(errs.ErrUnavailable, "datakeys: the keys of project %s are destroyed, but compacting etcd's history failed (retry to compact): %v", project, err)
		}
		m.logger.Info("datakeys: destroyed the data keys of a project", "project", project, "keys", len(destroyed), "compactedAt", rev)
	}
	return destroyed, nil
}

// addKey appends a new wrapped key to rec.
func (m *Manager) addKey(ctx context.Context, project string, rec *storagev1.ProjectDataKeys) error {
	id := max(rec.GetLastKeyId(), FirstKeyID) + 1
	if id == 0 {
		return errs.Wrapf(errs.ErrInternal, "datakeys: project %s has used every data key id", project)
	}
	secret := make([]byte, keySize)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("datakeys: making a data key: %w", err)
	}
	kek, wrapped, err := m.provider.Wrap(ctx, secret, additionalData(project, id))
	if err != nil {
		return err
	}
	rec.ProjectId = project
	rec.LastKeyId = id
	rec.Keys = append(rec.Keys, &storagev1.WrappedDataKey{Id: id, Provider: m.provider.Name(), KekId: kek, Wrapped: wrapped, CreateTime: timestamppb.New(m.now())})
	return nil
}

// guard is another key a change reads and requires unchanged.
type guard struct {
	key   string
	check func(value []byte) error
}

// change applies edit to the project's record by compare-and-swap and
// installs the result. edit reports whether it changed anything; when it
// did not, nothing is written and rev is 0.
func (m *Manager) change(ctx context.Context, project string, edit func(*storagev1.ProjectDataKeys) (bool, error), guards ...guard) (pk *projectKeys, rev int64, err error) {
	key := recordKey(project)
	for range casAttempts {
		ops := []clientv3.Op{clientv3.OpGet(key)}
		for _, g := range guards {
			ops = append(ops, clientv3.OpGet(g.key))
		}
		resp, err := m.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, 0, errs.Wrapf(errs.ErrUnavailable, "datakeys: reading etcd: %v", err)
		}
		rec := &storagev1.ProjectDataKeys{ProjectId: project}
		var recRev int64
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			recRev = kvs[0].ModRevision
			if err := proto.Unmarshal(kvs[0].Value, rec); err != nil {
				return nil, 0, fmt.Errorf("datakeys: the record of project %s is unreadable: %w", project, err)
			}
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", recRev)}
		for i, g := range guards {
			var v []byte
			var gRev int64
			if kvs := resp.Responses[i+1].GetResponseRange().GetKvs(); len(kvs) > 0 {
				v, gRev = kvs[0].Value, kvs[0].ModRevision
			}
			if err := g.check(v); err != nil {
				return nil, 0, err
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(g.key), "=", gRev))
		}
		changed, err := edit(rec)
		if err != nil {
			return nil, 0, err
		}
		if !changed {
			pk, err := m.install(ctx, project, recRev, rec)
			return pk, 0, err
		}
		value, err := proto.Marshal(rec)
		if err != nil {
			return nil, 0, err
		}
		put, err := m.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(value))).Commit()
		if err != nil {
			return nil, 0, errs.Wrapf(errs.ErrUnavailable, "datakeys: writing etcd: %v", err)
		}
		if !put.Succeeded {
			continue // changed meanwhile: read again
		}
		pk, err := m.install(ctx, project, put.Header.Revision, rec)
		return pk, put.Header.Revision, err
	}
	return nil, 0, errs.Wrapf(errs.ErrUnavailable, "datakeys: the keys of project %s kept changing; try again", project)
}

// load reads the project's record from etcd and installs it.
func (m *Manager) load(ctx context.Context, project string) (*projectKeys, error) {
	resp, err := m.cli.Get(ctx, recordKey(project))
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "datakeys: reading etcd: %v", err)
	}
	rec := &storagev1.ProjectDataKeys{ProjectId: project}
	var rev int64
	if len(resp.Kvs) > 0 {
		rev = resp.Kvs[0].ModRevision
		if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
			return nil, fmt.Errorf("datakeys: the record of project %s is unreadable: %w", project, err)
		}
	}
	return m.install(ctx, project, rev, rec)
}

// install unwraps rec's keys (reusing those already unwrapped) and makes
// it the project's record unless a newer one is held; listeners hear of a
// change.
func (m *Manager) install(ctx context.Context, project string, rev int64, rec *storagev1.ProjectDataKeys) (*projectKeys, error) {
	m.mu.Lock()
	old := m.projects[project]
	m.mu.Unlock()
	if old != nil && old.rev >= rev {
		return old, nil
	}
	known := map[uint32][]byte{}
	if old != nil {
		for _, k := range old.keys {
			known[k.ID] = k.Secret
		}
	}
	pk := &projectKeys{rev: rev, rec: rec}
	for _, w := range rec.GetKeys() {
		secret, ok := known[w.GetId()]
		if !ok {
			var err error
			if w.GetProvider() != m.provider.Name() {
				return nil, fmt.Errorf("datakeys: data key %d of project %s was wrapped by key provider %q; this node has %q", w.GetId(), project, w.GetProvider(), m.provider.Name())
			}
			if secret, err = m.provider.Unwrap(ctx, w.GetKekId(), w.GetWrapped(), additionalData(project, w.GetId())); err != nil {
				return nil, fmt.Errorf("datakeys: data key %d of project %s: %w", w.GetId(), project, err)
			}
		}
		pk.keys = append(pk.keys, partitionlog.Key{ID: w.GetId(), Secret: secret})
	}
	m.mu.Lock()
	if cur := m.projects[project]; cur != nil && cur.rev >= rev {
		m.mu.Unlock()
		return cur, nil
	}
	m.projects[project] = pk
	listeners := m.listeners
	m.mu.Unlock()
	if old != nil && !sameKeys(old.keys, pk.keys) {
		for _, fn := range listeners {
			fn(project)
		}
	}
	return pk, nil
}

func sameKeys(a, b []partitionlog.Key) bool {
	return slices.EqualFunc(a, b, func(x, y partitionlog.Key) bool { return x.ID == y.ID })
}

// ErrNotDataKey is returned by ValidateMasterKeyIDs.
var ErrNotDataKey = errors.New("datakeys: master key id in the data key range")

// ValidateMasterKeyIDs fails if a master key id is in the data key range.
func ValidateMasterKeyIDs(ids []uint32) error {
	for _, id := range ids {
		if id >= FirstKeyID {
			return fmt.Errorf("%w: master key id %d; ids from %d on are reserved for project data keys, give the master key a smaller id", ErrNotDataKey, id, FirstKeyID)
		}
	}
	return nil
}
