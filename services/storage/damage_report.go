package storage

import (
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// DamageEvent is a damaged range a log found on disk (and quarantined), or
// a lost range fetched again from a replica: what an operator's audit trail
// records beside the metrics.
type DamageEvent struct {
	Log      logid.ID
	From, To int64 // offsets, inclusive; 0, -1 for a torn tail
	Bytes    int64 // quarantined bytes (found)
	Torn     bool  // a torn tail cut at open: never acknowledged
	Repaired bool  // fetched again from an in-sync replica
}

// SetDamageReporter gives the engine a function told of every DamageEvent
// (the audit trail's). It is called on the goroutine that found or repaired
// the damage and must not block.
func (e *Engine) SetDamageReporter(fn func(DamageEvent)) { e.damageReporter.Store(&fn) }

func (e *Engine) reportDamage(ev DamageEvent) {
	if fn := e.damageReporter.Load(); fn != nil {
		(*fn)(ev)
	}
}

// damageFound counts and reports a range partitionlog quarantined.
func (e *Engine) damageFound(id logid.ID, r partitionlog.Repair) {
	e.repairs.counts.found(id, r)
	if r.Recorded {
		return // reported when it was found
	}
	e.reportDamage(DamageEvent{Log: id, From: r.From, To: r.To, Bytes: r.Bytes, Torn: r.Torn})
}
