package storage

import (
	"sync"
	"testing"
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/placement"
)

// The fetch loops look for the units they follow while leaders record their
// followers' progress (holding a unit's mutex, they list its logs) and
// while a unit becomes leader: taking a unit's mutex under the units'
// mutex deadlocked a node for good (found by the fault harness, a node
// whose placement loop, fetches and appends all stopped).
func TestFollowedUnitsAreListedWithoutALockOrderInversion(t *testing.T) {
	e := &Engine{units: newUnits()}
	fs := newFetchers(e)
	var all []*unit
	for shard := range int32(8) {
		id := &storagev1.UnitId{Kind: storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, Shard: shard}
		u := &unit{id: id, key: placement.UnitKey(id), hwChanged: make(chan struct{}), following: true}
		e.units.byKey[u.key] = u
		all = append(all, u)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() {
			for range 20000 {
				fs.followedOn("node1")
			}
		})
		for _, u := range all {
			wg.Go(func() {
				for range 20000 {
					u.mu.Lock() // as recordProgress, nextISR and becomeLeader do
					e.units.logsOf(u.key)
					u.mu.Unlock()
				}
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("deadlock: followedOn and a holder of a unit's mutex wait for each other")
	}
}
