package partitionlog

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The leader-epoch history of a log (Kafka's LeaderEpochFileCache): which
// leader epoch wrote which offsets, so that a follower that comes back can
// find where its log diverged from the leader's (KIP-101, KIP-279). It is
// kept in memory and persisted to the file leader-epochs (format in doc.go)
// on every change, before the change is visible.

const epochFileName = "leader-epochs"

const epochFileHeader = "dms partitionlog leader-epochs 1"

// EpochEntry says that leader epoch Epoch wrote the offsets from StartOffset
// up to the StartOffset of the next entry (or the log's end).
type EpochEntry struct {
	Epoch       int64
	StartOffset int64
}

// ErrInvalidEpoch is wrapped by AssignEpoch's errors for an epoch lower than
// the latest one, or a negative epoch or offset.
var ErrInvalidEpoch = errors.New("partitionlog: invalid leader epoch")

// AssignEpoch records that leader epoch epoch begins at offset startOffset,
// durably (the history file is replaced and fsynced before it returns).
// Entries are kept with increasing epochs and non-decreasing start offsets:
//   - an epoch lower than the latest one is refused (ErrInvalidEpoch);
//   - the latest epoch again, at the same or a higher offset, is a no-op;
//   - otherwise, as Kafka does, the entries at the end whose epoch is >= epoch
//     or whose start offset is >= startOffset are removed first (so the
//     latest epoch again at a lower offset moves its start down, and a new
//     epoch starting below earlier entries replaces them).
func (l *Log) AssignEpoch(epoch, startOffset int64) error {
	if epoch < 0 || startOffset < 0 {
		return fmt.Errorf("%w: epoch %d at offset %d: both must be >= 0", ErrInvalidEpoch, epoch, startOffset)
	}
	l.emu.Lock()
	defer l.emu.Unlock()
	if err := l.checkOpen(); err != nil {
		return err
	}
	if n := len(l.epochs); n > 0 {
		last := l.epochs[n-1]
		if epoch < last.Epoch {
			return fmt.Errorf("%w: epoch %d is below the latest epoch %d", ErrInvalidEpoch, epoch, last.Epoch)
		}
		if epoch == last.Epoch && startOffset >= last.StartOffset {
			return nil
		}
	}
	next := slices.Clone(l.epochs)
	for len(next) > 0 {
		e := next[len(next)-1]
		if e.Epoch < epoch && e.StartOffset < startOffset {
			break
		}
		next = next[:len(next)-1]
	}
	next = append(next, EpochEntry{Epoch: epoch, StartOffset: startOffset})
	return l.setEpochsLocked(next)
}

func (l *Log) checkOpen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Epochs returns the leader-epoch history, oldest first.
func (l *Log) Epochs() []EpochEntry {
	l.emu.Lock()
	defer l.emu.Unlock()
	if len(l.epochs) == 0 {
		return nil
	}
	return slices.Clone(l.epochs)
}

// LatestEpoch returns the latest entry of the history, if there is one.
func (l *Log) LatestEpoch() (EpochEntry, bool) {
	l.emu.Lock()
	defer l.emu.Unlock()
	if len(l.epochs) == 0 {
		return EpochEntry{}, false
	}
	return l.epochs[len(l.epochs)-1], true
}

// EndOffsetForEpoch answers a follower's OffsetForLeaderEpoch request as
// Kafka's LeaderEpochFileCache.endOffsetFor does: the largest known epoch <=
// epoch, and its end offset, which is the start offset of the next higher
// known epoch, or NextOffset() if it is the latest. An epoch below every
// known one answers epoch itself, ending where the first known epoch
// starts: what a follower holds of older epochs up to there is what this log
// holds too (history below it was compacted by retention or never
// recorded), and what it holds beyond was written by a leader this log
// never followed. It returns (-1, -1) for a negative epoch or an empty
// history.
func (l *Log) EndOffsetForEpoch(epoch int64) (foundEpoch, endOffset int64) {
	l.emu.Lock()
	defer l.emu.Unlock()
	es := l.epochs
	if epoch < 0 || len(es) == 0 {
		return -1, -1
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].Epoch > epoch }) - 1
	switch {
	case i < 0:
		return epoch, es[0].StartOffset
	case i == len(es)-1:
		return es[i].Epoch, l.NextOffset()
	default:
		return es[i].Epoch, es[i+1].StartOffset
	}
}

// setEpochsLocked persists es and makes it the history. Caller holds emu.
func (l *Log) setEpochsLocked(es []EpochEntry) error {
	var b strings.Builder
	b.WriteString(epochFileHeader + "\n")
	b.WriteString(strconv.Itoa(len(es)) + "\n")
	for _, e := range es {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.StartOffset)
	}
	if err := writeChecksummedFile(l.dir, epochFileName, b.String()); err != nil {
		return err
	}
	l.epochs = es
	return nil
}

// truncateEpochsFromEnd removes the entries starting at or after next (the
// log's new end) and persists the result if anything changed.
func (l *Log) truncateEpochsFromEnd(next int64) error {
	l.emu.Lock()
	defer l.emu.Unlock()
	i := len(l.epochs)
	for i > 0 && l.epochs[i-1].StartOffset >= next {
		i--
	}
	if i == len(l.epochs) {
		return nil
	}
	return l.setEpochsLocked(slices.Clone(l.epochs[:i]))
}

// clearEpochs empties the history (Reset).
func (l *Log) clearEpochs() error {
	l.emu.Lock()
	defer l.emu.Unlock()
	if len(l.epochs) == 0 {
		return nil
	}
	return l.setEpochsLocked(nil)
}

// truncateEpochsFromStart compacts the entries wholly below the log's new
// start offset, as Kafka does when log segments are deleted: of the entries
// starting at or before start, only the latest is kept, moved up to start.
func (l *Log) truncateEpochsFromStart(start int64) error {
	l.emu.Lock()
	defer l.emu.Unlock()
	es := l.epochs
	i := sort.Search(len(es), func(i int) bool { return es[i].StartOffset > start }) // es[:i] start at or before start
	if i == 0 || (i == 1 && es[0].StartOffset == start) {
		return nil
	}
	next := append([]EpochEntry{{Epoch: es[i-1].Epoch, StartOffset: start}}, es[i:]...)
	return l.setEpochsLocked(next)
}

// loadEpochs reads the history file, if there is one. A damaged file fails
// Open: silently losing entries could let a follower keep diverged data.
func (l *Log) loadEpochs() error {
	lines, exists, err := readChecksummedFile(l.dir, epochFileName)
	if err != nil || !exists {
		if err != nil {
			err = fmt.Errorf("%w (the leader-epoch history cannot be trusted; deleting the file starts an empty one)", err)
		}
		return err
	}
	damaged := func(why string) error {
		return fmt.Errorf("%w: leader-epoch file %s/%s is damaged: %s", ErrCorrupt, l.dir, epochFileName, why)
	}
	if len(lines) < 2 || lines[0] != epochFileHeader {
		return damaged("unknown header")
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n != len(lines)-2 {
		return damaged("wrong entry count")
	}
	es := make([]EpochEntry, 0, n)
	for i, line := range lines[2:] {
		v, ok := parseInts(line, 2)
		if !ok || v[0] < 0 || v[1] < 0 {
			return damaged(fmt.Sprintf("entry %d is not two non-negative numbers", i))
		}
		e := EpochEntry{Epoch: v[0], StartOffset: v[1]}
		if i > 0 && (e.Epoch <= es[i-1].Epoch || e.StartOffset < es[i-1].StartOffset) {
			return damaged(fmt.Sprintf("entry %d is out of order", i))
		}
		es = append(es, e)
	}
	l.epochs = es
	return nil
}
