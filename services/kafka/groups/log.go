package groups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// shard is the loaded state of one delivery shard's groups, in one owner
// epoch.
type shard struct {
	c      *Coordinator
	id     int32
	epoch  int64
	log    logid.ID
	loaded chan struct{}
	// loadErr is set before loaded is closed.
	loadErr error
	closed  atomic.Bool

	mu     sync.Mutex
	groups map[string]*group // by key

	cpMu          sync.Mutex
	sinceCP       int64 // bytes appended since the last checkpoint
	checkpointing bool
}

func newShard(c *Coordinator, id int32, epoch int64) *shard {
	return &shard{c: c, id: id, epoch: epoch, log: logid.KafkaGroups(id), loaded: make(chan struct{}), groups: map[string]*group{}}
}

func (sh *shard) isClosed() bool { return sh.closed.Load() }

// close drops the shard's state: its timers do nothing from now on and are
// stopped, and members waiting for a rebalance are told to find the new
// coordinator. A request still holding one of its groups writes with the old
// epoch, which storage refuses once another owner fenced it. close may be
// called with a group's lock held (a write that found the shard fenced),
// so the timers are stopped without waiting for the locks.
func (sh *shard) close() {
	if sh.closed.Swap(true) {
		return
	}
	go func() {
		for _, g := range sh.list() {
			g.mu.Lock()
			g.stopTimers()
			// Members waiting in JoinGroup or SyncGroup look for the new
			// coordinator now rather than at their request's timeout.
			for _, m := range g.members {
				if m.join != nil {
					m.join <- JoinResult{Err: kerr.NotCoordinator, MemberID: m.id}
					m.join = nil
				}
				if m.sync != nil {
					m.sync <- SyncResult{Err: kerr.NotCoordinator}
					m.sync = nil
				}
			}
			g.mu.Unlock()
		}
	}()
}

// list returns the shard's groups.
func (sh *shard) list() []*group {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]*group, 0, len(sh.groups))
	for _, g := range sh.groups {
		out = append(out, g)
	}
	return out
}

// entry is one record of the log: a key and its value, nil for a
// tombstone.
type entry struct{ key, value []byte }

// encode writes an entry as a record payload: int32 key length, key, int32
// value length (-1 for a tombstone), value.
func (e entry) encode() []byte {
	b := make([]byte, 0, 8+len(e.key)+len(e.value))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.key)))
	b = append(b, e.key...)
	if e.value == nil {
		return binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.value)))
	return append(b, e.value...)
}

func decodeEntry(b []byte) (entry, error) {
	bad := errors.New("groups: malformed record")
	if len(b) < 4 {
		return entry{}, bad
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 0 || len(b) < 8+n {
		return entry{}, bad
	}
	e := entry{key: b[4 : 4+n]}
	rest := b[4+n:]
	vn := int32(binary.BigEndian.Uint32(rest))
	switch {
	case vn == -1:
		if len(rest) != 4 {
			return entry{}, bad
		}
	case vn < 0 || len(rest) != 4+int(vn):
		return entry{}, bad
	default:
		e.value = rest[4:]
	}
	return e, nil
}

// The versions of Kafka's __consumer_offsets keys: 0 and 1 are offset
// commits, 2 group metadata.
const (
	offsetKeyVersion   = 1
	groupKeyVersion    = 2
	offsetValueVersion = 3 // with the leader epoch
	groupValueVersion  = 3 // with static members' instance ids
)

func groupEntry(key string, v *kmsg.GroupMetadataValue) entry {
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: key}
	e := entry{key: k.AppendTo(nil)}
	if v != nil {
		v.Version = groupValueVersion
		e.value = v.AppendTo(nil)
	}
	return e
}

func offsetEntry(key string, tp TopicPartition, v *Offset) entry {
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: key, Topic: tp.Topic, Partition: tp.Partition}
	e := entry{key: k.AppendTo(nil)}
	if v != nil {
		val := kmsg.OffsetCommitValue{Version: offsetValueVersion, Offset: v.Offset, LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitTimestamp: v.CommitMillis}
		e.value = val.AppendTo(nil)
	}
	return e
}

// appendEntries makes entries durable in the shard's log, in the shard's
// owner epoch.
func (sh *shard) appendEntries(ctx context.Context, entries []entry) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := sh.appendRaw(ctx, entries)
	return err
}

// maxAppendBytes bounds one append; storage takes batches of a few MiB.
const maxAppendBytes = 4 << 20

// appendRaw appends entries in chunks and returns the offset of the first.
func (sh *shard) appendRaw(ctx context.Context, entries []entry) (int64, error) {
	if sh.isClosed() {
		return 0, fmt.Errorf("%w: delivery shard %d changed owner", kerr.NotCoordinator, sh.id)
	}
	first, total := int64(-1), int64(0)
	now := sh.c.now().UnixMilli()
	for len(entries) > 0 {
		var recs []*storagev1.Record
		size := 0
		for len(entries) > 0 && (len(recs) == 0 || size+len(entries[0].key)+len(entries[0].value) < maxAppendBytes) {
			p := entries[0].encode()
			size += len(p)
			recs = append(recs, &storagev1.Record{TimestampMs: now, Payload: p})
			entries = entries[1:]
		}
		resp, err := sh.c.storage.Append(ctx, &storagev1.AppendRequest{Log: sh.log, Records: recs, WriterEpoch: sh.epoch})
		if err != nil {
			err = storeError(err)
			if errors.Is(err, kerr.NotCoordinator) {
				// Another node owns the shard now: drop this state.
				sh.close()
			}
			return 0, err
		}
		if first < 0 {
			first = resp.GetFirstOffset()
		}
		total += int64(size)
	}
	sh.grew(total)
	return first, nil
}

// grew counts appended bytes and starts a checkpoint past the threshold.
func (sh *shard) grew(n int64) {
	sh.cpMu.Lock()
	sh.sinceCP += n
	start := sh.sinceCP >= sh.c.cfg.CheckpointBytes && !sh.checkpointing
	if start {
		sh.checkpointing = true
		sh.sinceCP = 0
	}
	sh.cpMu.Unlock()
	if start {
		sh.c.bg.Go(sh.checkpoint)
	}
}

// checkpointTimeout bounds a checkpoint; a failed one is tried again
// after the next CheckpointBytes.
const checkpointTimeout = time.Minute

// checkpoint writes the current value of every live key after a marker
// and trims the log before the marker. Each group's records are written
// under its lock, so that nothing it commits meanwhile lands between its
// snapshot and an older value; a group created after the marker has all
// its records after it.
func (sh *shard) checkpoint() {
	defer func() {
		sh.cpMu.Lock()
		sh.checkpointing = false
		sh.cpMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(sh.c.ctx, checkpointTimeout)
	defer cancel()
	marker, err := sh.appendRaw(ctx, []entry{{}})
	if err != nil {
		sh.c.logger.Warn("kafka groups: checkpoint not written", "shard", sh.id, "err", err)
		return
	}
	for _, g := range sh.list() {
		g.mu.Lock()
		var entries []entry
		if g.state != Dead && !g.isShell() {
			entries = g.snapshot()
		}
		_, err := sh.appendRaw(ctx, entries)
		g.mu.Unlock()
		if err != nil {
			sh.c.logger.Warn("kafka groups: checkpoint not written", "shard", sh.id, "err", err)
			return
		}
	}
	if _, err := sh.c.storage.TrimLog(ctx, &storagev1.TrimLogRequest{Log: sh.log, BeforeOffset: marker, WriterEpoch: sh.epoch}); err != nil {
		sh.c.logger.Warn("kafka groups: log not trimmed after a checkpoint", "shard", sh.id, "err", err)
		return
	}
	sh.c.logger.Debug("kafka groups: checkpoint", "shard", sh.id, "trimmed_before", marker)
}

// loadTimeout bounds a shard's replay.
const loadTimeout = 5 * time.Minute

// load replays the shard's log into its groups.
func (sh *shard) load() {
	defer close(sh.loaded)
	ctx, cancel := context.WithTimeout(sh.c.ctx, loadTimeout)
	defer cancel()
	metas := map[string]*kmsg.GroupMetadataValue{}
	offsets := map[string]map[TopicPartition]Offset{}
	replayed := 0
	for offset := int64(0); ; {
		// The owner's epoch makes the read a fencing one: storage refuses
		// the writes of older owners from then on and waits for those it
		// accepted, so the replay sees all they were told were stored.
		resp, err := sh.c.storage.Read(ctx, &storagev1.ReadRequest{Log: sh.log, Offset: offset, MaxBytes: 4 << 20, WriterEpoch: sh.epoch})
		if err != nil {
			sh.loadErr = storeError(err)
			sh.c.logger.Warn("kafka groups: shard not loaded", "shard", sh.id, "err", err)
			return
		}
		for _, r := range resp.GetRecords() {
			offset = r.GetOffset() + 1
			replayed++
			if err := replay(r.GetRecord().GetPayload(), metas, offsets); err != nil {
				sh.c.logger.Error("kafka groups: a record of the log is not understood; skipped", "shard", sh.id, "offset", r.GetOffset(), "err", err)
			}
		}
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			// Damaged beyond repair: what those records said is forgotten,
			// so offsets they committed are older ones again (a consumer
			// reads some messages twice), never newer.
			sh.c.logger.Error("kafka groups: records of the log are lost (damaged on disk); committed offsets may go back",
				"shard", sh.id, "fromOffset", lost.GetFirstOffset(), "toOffset", lost.GetLastOffset())
			offset = lost.GetLastOffset() + 1
			continue
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			break
		}
	}
	sh.mu.Lock()
	for key, v := range metas {
		sh.groups[key] = restoreGroup(sh, key, v)
	}
	for key, offs := range offsets {
		g := sh.groups[key]
		if g == nil {
			g = newGroup(sh, key, key[len(projectOf(key))+1:])
			sh.groups[key] = g
		}
		g.offsets = offs
	}
	sh.mu.Unlock()
	if sh.c.cfg.OffsetsRetention > 0 {
		sh.c.bg.Go(sh.expireLoop)
	}
	if replayed > 0 {
		sh.c.logger.Info("kafka groups loaded", "shard", sh.id, "epoch", sh.epoch, "records", replayed, "groups", len(sh.groups))
	}
}

// projectOf returns the project part of a group key.
func projectOf(key string) string {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i]
		}
	}
	return ""
}

// replay folds one record into the maps of a load.
func replay(p []byte, metas map[string]*kmsg.GroupMetadataValue, offsets map[string]map[TopicPartition]Offset) error {
	e, err := decodeEntry(p)
	if err != nil {
		return err
	}
	if len(e.key) == 0 {
		return nil // a checkpoint marker
	}
	if len(e.key) < 2 {
		return errors.New("groups: record key too short")
	}
	switch version := int16(binary.BigEndian.Uint16(e.key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(e.key); err != nil {
			return err
		}
		tp := TopicPartition{Topic: k.Topic, Partition: k.Partition}
		if e.value == nil {
			delete(offsets[k.Group], tp)
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(e.value); err != nil {
			return err
		}
		if offsets[k.Group] == nil {
			offsets[k.Group] = map[TopicPartition]Offset{}
		}
		offsets[k.Group][tp] = Offset{Offset: v.Offset, LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitMillis: v.CommitTimestamp}
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(e.key); err != nil {
			return err
		}
		if e.value == nil {
			// A deleted group: its offsets went with it.
			delete(metas, k.Group)
			delete(offsets, k.Group)
			return nil
		}
		v := &kmsg.GroupMetadataValue{}
		if err := v.ReadFrom(e.value); err != nil {
			return err
		}
		metas[k.Group] = v
	default:
		return fmt.Errorf("groups: record key version %d", version)
	}
	return nil
}

// expireLoop deletes the groups whose offsets expired, at an interval of
// a tenth of the retention, at most Kafka's ten minutes
// (offsets.retention.check.interval.ms), until the shard is dropped.
func (sh *shard) expireLoop() {
	interval := min(sh.c.cfg.OffsetsRetention/10, 10*time.Minute)
	t := time.NewTicker(max(interval, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-sh.c.ctx.Done():
			return
		case <-t.C:
		}
		if sh.isClosed() {
			return
		}
		for _, g := range sh.list() {
			g.mu.Lock()
			if g.expired(sh.c.now(), sh.c.cfg.OffsetsRetention) {
				if err := g.delete(sh.c.ctx); err != nil {
					sh.c.logger.Warn("kafka groups: expired group not deleted", "group", g.key, "err", err)
				} else {
					sh.c.logger.Info("kafka groups: group expired with its offsets", "group", g.key)
				}
			}
			g.mu.Unlock()
		}
	}
}
