package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// scrubLoop verifies the sealed segments of every open log at the configured
// rate, one log after another, again and again; damage is repaired by the
// log (quarantined and marked lost) and counted. The first pass waits a
// little (a minute at most): logs open lazily, and a pass at startup would
// see only those of the units this node leads, leaving the ones it follows
// (opened by its fetch loops a moment later) unverified for an interval.
func (e *Engine) scrubLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(min(scrubInterval(e.cfg), time.Minute)):
	}
	for {
		e.mu.Lock()
		logs := make([]*openLog, 0, len(e.logs))
		for _, l := range e.logs {
			logs = append(logs, l)
		}
		e.mu.Unlock()
		slices.SortFunc(logs, func(a, b *openLog) int { return strings.Compare(logid.Key(a.id), logid.Key(b.id)) })
		var segments, bytes int64
		for _, l := range logs {
			res, err := l.Scrub(ctx, e.cfg.ScrubBytesPerSecond)
			if ctx.Err() != nil {
				return
			}
			segments, bytes = segments+res.Segments, bytes+res.Bytes
			if err != nil && !errors.Is(err, partitionlog.ErrClosed) {
				e.logger.Error("storage: scrubbing a log failed", "log", logid.Key(l.id), "err", err)
			}
			for _, r := range res.Repairs {
				e.logger.Error("storage: the scrubber found damaged data and quarantined it", "log", logid.Key(l.id), "segment", r.Segment,
					"position", r.Position, "bytes", r.Bytes, "fromOffset", r.From, "toOffset", r.To, "quarantine", r.Quarantine)
			}
		}
		e.logger.Debug("storage: scrub pass done", "logs", len(logs), "segments", segments, "bytes", bytes)
		select {
		case <-ctx.Done():
			return
		case <-time.After(scrubInterval(e.cfg)):
		}
	}
}

// scrubInterval is the configured rest between scrub passes, an hour when
// unset.
func scrubInterval(cfg Config) time.Duration {
	if cfg.ScrubInterval <= 0 {
		return time.Hour
	}
	return cfg.ScrubInterval
}

// CheckDataDir verifies every log under a storage directory offline (see
// partitionlog.Check), writes a report to w with paths relative to dir, and
// returns how many problems it found. Without keys, encrypted batches are
// checked by their CRC only; so are batches sealed with a project's data
// key, which lives in etcd, out of an offline check's reach.
func CheckDataDir(dir string, keys *partitionlog.Keyring, w io.Writer) (problems int, err error) {
	if keys != nil {
		keys = keys.CRCOnlyFrom(datakeys.FirstKeyID)
	}
	var logDirs []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if segs, _ := filepath.Glob(filepath.Join(p, "*.log")); len(segs) > 0 {
				logDirs = append(logDirs, p)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: listing %s: %w", dir, err)
	}
	var segments, bytes, lost int64
	for _, d := range logDirs {
		rel, _ := filepath.Rel(dir, d)
		rep, err := partitionlog.Check(d, keys)
		if err != nil {
			return problems, fmt.Errorf("storage: checking %s: %w", rel, err)
		}
		segments += int64(rep.Segments)
		bytes += rep.Bytes
		for _, r := range rep.Damage {
			if r.Torn {
				fmt.Fprintf(w, "torn tail  %s/%s at position %d (%d bytes after offset %d): an interrupted write, cut off at the next start\n", rel, r.Segment, r.Position, r.Bytes, r.From-1)
				continue
			}
			fmt.Fprintf(w, "DAMAGED    %s/%s at position %d, %d bytes: offsets %d to %d unreadable\n", rel, r.Segment, r.Position, r.Bytes, r.From, r.To)
		}
		for _, r := range rep.Lost {
			lost += r.To - r.From + 1
			fmt.Fprintf(w, "lost       %s/%s at position %d: offsets %d to %d (%s)\n", rel, r.Segment, r.Position, r.From, r.To, r.Quarantine)
		}
		for _, f := range rep.Indexes {
			fmt.Fprintf(w, "BAD INDEX  %s/%s: entries do not match the segment (rebuilt at the next start or scrub)\n", rel, f)
		}
		for _, f := range rep.Files {
			fmt.Fprintf(w, "DAMAGED    %s: %s\n", rel, f)
		}
		problems += rep.Problems()
	}
	fmt.Fprintf(w, "checked %d logs, %d segments, %d bytes: %d problems, %d offsets recorded as lost earlier\n", len(logDirs), segments, bytes, problems, lost)
	return problems, nil
}
