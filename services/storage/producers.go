package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Idempotent Kafka producers stamp each batch with a producer id, an epoch
// and a sequence number; the leader of a partition keeps, per producer, the
// last batches it stored (Kafka keeps 5, which is how many a producer may
// have in flight), so that a retried batch is stored once and a batch that
// skips sequence numbers is refused. Storage reads these fields from the
// Kafka batch header itself: the state must be rebuilt from the log after a
// leader change, and the log holds nothing else.
const kafkaBatchesPerProducer = 5

// The fields of a Kafka record batch (magic 2) header this needs.
const (
	kafkaHeaderSize       = 61
	kafkaOffMagic         = 16
	kafkaOffProducerID    = 43
	kafkaOffProducerEpoch = 51
	kafkaOffBaseSequence  = 53
	kafkaOffRecordCount   = 57
)

// kafkaProducerFields returns the producer fields of a Kafka batch; id < 0
// for a batch of a producer that is not idempotent.
func kafkaProducerFields(data []byte) (id int64, epoch int16, seq, count int32, err error) {
	if len(data) < kafkaHeaderSize || data[kafkaOffMagic] != 2 {
		return 0, 0, 0, 0, errs.Wrapf(errs.ErrRequestInvalid, "storage: not a Kafka record batch of magic 2")
	}
	be := binary.BigEndian
	return int64(be.Uint64(data[kafkaOffProducerID:])), int16(be.Uint16(data[kafkaOffProducerEpoch:])),
		int32(be.Uint32(data[kafkaOffBaseSequence:])), int32(be.Uint32(data[kafkaOffRecordCount:])), nil
}

// producers is the idempotent producers' recent batches of one log.
type producers struct {
	mu    sync.Mutex
	built bool
	byID  map[int64]*producer
}

type producer struct {
	mu      sync.Mutex // held across a batch's check, append and record
	epoch   int16
	batches []seqBatch // oldest first
}

type seqBatch struct {
	firstSeq, lastSeq int32
	offset            int64
}

// producersOf returns the producer state of a log, rebuilt from the log's
// tail on first use after this node started leading it.
func (e *Engine) producersOf(l *openLog) (*producers, error) {
	key := logid.Key(l.id)
	e.mu.Lock()
	ps := e.producers[key]
	if ps == nil {
		ps = &producers{}
		e.producers[key] = ps
	}
	e.mu.Unlock()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.built {
		return ps, nil
	}
	ps.byID = map[int64]*producer{}
	for from := max(l.StartOffset(), l.NextOffset()-dedupWindow); from < l.NextOffset(); {
		batches, err := l.ReadBatches(from, 4<<20)
		var lost *partitionlog.LostRangeError
		if errors.As(err, &lost) {
			from = lost.To + 1 // lost data has no keys to remember
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storage: rebuilding the producer state of %s: %w", logid.Describe(l.id), err)
		}
		if len(batches) == 0 {
			break
		}
		for _, b := range batches {
			from = b.BaseOffset + int64(b.Count)
			if b.Format != kafkaFormat {
				continue
			}
			id, epoch, seq, count, err := kafkaProducerFields(b.Payload)
			if err != nil || id < 0 {
				continue
			}
			p := ps.byID[id]
			if p == nil || epoch > p.epoch {
				p = &producer{epoch: epoch}
				ps.byID[id] = p
			}
			p.record(seqBatch{firstSeq: seq, lastSeq: seq + count - 1, offset: b.BaseOffset})
		}
	}
	ps.built = true
	return ps, nil
}

func (p *producer) record(b seqBatch) {
	p.batches = append(p.batches, b)
	if len(p.batches) > kafkaBatchesPerProducer {
		p.batches = p.batches[1:]
	}
}

// appendKafkaBatch stores a Kafka batch, checking its producer's sequence
// when the producer is idempotent: a retry of one of the producer's last
// batches answers with that batch's offset and stores nothing, a batch that
// does not follow the last one is refused.
func (e *Engine) appendKafkaBatch(ctx context.Context, l *openLog, b *storagev1.RecordBatch) (*storagev1.AppendResponse, error) {
	id, epoch, seq, count, err := kafkaProducerFields(b.GetData())
	if err != nil {
		return nil, err
	}
	if id < 0 {
		return e.appendBatch(ctx, l, b)
	}
	ps, err := e.producersOf(l)
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	p := ps.byID[id]
	if p == nil {
		p = &producer{epoch: epoch}
		ps.byID[id] = p
	}
	ps.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case epoch < p.epoch:
		return nil, errs.Wrapf(errs.ErrProducerFenced, "storage: producer %d has epoch %d; a batch of epoch %d is refused", id, p.epoch, epoch)
	case epoch > p.epoch:
		// A new epoch of the producer starts its sequences over.
		p.epoch, p.batches = epoch, nil
	}
	if n := len(p.batches); n > 0 {
		for _, prev := range p.batches {
			if prev.firstSeq == seq && prev.lastSeq == seq+count-1 {
				return &storagev1.AppendResponse{FirstOffset: prev.offset, Duplicate: true}, nil
			}
		}
		if last := p.batches[n-1].lastSeq; seq != last+1 && !(last == 1<<31-1 && seq == 0) {
			return nil, errs.Wrapf(errs.ErrOutOfOrderSequence, "storage: producer %d sent sequence %d after %d", id, seq, last)
		}
	}
	// Not cancelled with the caller: a cancelled append may still be
	// written, and a batch written without its sequence recorded would be
	// stored again by the producer's retry.
	resp, err := e.appendBatch(context.WithoutCancel(ctx), l, b)
	if err != nil {
		return nil, err
	}
	p.record(seqBatch{firstSeq: seq, lastSeq: seq + count - 1, offset: resp.GetFirstOffset()})
	return resp, nil
}

// forgetTailState drops what a node remembered of a log's recent appends
// (idempotence keys, producers), for it to be rebuilt from the log: when
// the node starts leading the log, what it remembered may predate a
// truncation.
func (e *Engine) forgetTailState(id logid.ID) {
	key := logid.Key(id)
	e.mu.Lock()
	delete(e.dedups, key)
	delete(e.producers, key)
	e.mu.Unlock()
}
