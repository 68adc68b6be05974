package partitionlog

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// EnforceRetention deletes whole segments from the start of the log: each
// oldest segment is deleted while every one of its records is older than
// Now()-maxAge (maxAge <= 0: no age limit) or while the log's Size() exceeds
// maxBytes (maxBytes <= 0: no size limit). The active (last) segment is never
// deleted. Readers still reading a deleted segment finish normally; later
// reads below the new StartOffset fail with ErrOffsetOutOfRange.
func (l *Log) EnforceRetention(maxAge time.Duration, maxBytes int64) (deleted int, err error) {
	cutoff := l.opts.Now().Add(-maxAge).UnixMilli()
	return l.dropLeading("retention", func(s *segment, total int64) bool {
		return (maxAge > 0 && s.maxTs < cutoff) || (maxBytes > 0 && total > maxBytes)
	})
}

// TrimBefore deletes the oldest segments whose records all lie below
// offset: internal logs whose owner checkpointed its state do not need
// them. The segment holding offset, and the active segment, stay.
func (l *Log) TrimBefore(offset int64) (deleted int, err error) {
	return l.dropLeading("trim", func(s *segment, _ int64) bool { return s.next <= offset })
}

// dropLeading deletes the oldest segments for as long as drop says so,
// given the segment and the log's size before deleting it. The active (last)
// segment is never deleted. Readers still reading a deleted segment finish
// normally; later reads below the new StartOffset fail with
// ErrOffsetOutOfRange.
func (l *Log) dropLeading(why string, drop func(s *segment, total int64) bool) (deleted int, err error) {
	l.retentionMu.Lock()
	defer l.retentionMu.Unlock()

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	total := l.sizeLocked()
	n := 0
	for ; n < len(l.segs)-1; n++ {
		s := l.segs[n]
		if !drop(s, total) {
			break
		}
		total -= s.diskSize()
	}
	if n == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	victims := append([]*segment(nil), l.segs[:n]...)
	l.segs = append([]*segment(nil), l.segs[n:]...)
	start := l.segs[0].base
	l.start.Store(start)
	l.mu.Unlock()

	var errs []error
	// The leader-epoch entries wholly below the new start are compacted, as
	// Kafka does when the log start offset moves. A crash between this and
	// the deletions below only compacts the history a little early: it loses
	// the epochs of offsets that were about to be deleted.
	if err := l.truncateEpochsFromStart(start); err != nil {
		errs = append(errs, err)
	}
	for _, s := range victims {
		l.logger.Info("partitionlog: deleting segment", "why", why, "segment", s.logPath, "nextOffset", s.next)
		for _, p := range s.paths() {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		s.unref()
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("partitionlog: %s: %w", why, err)
	}
	return n, nil
}
