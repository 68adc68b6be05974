package delivery

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/storage/logid"
)

// The interval set behaves exactly like a map of offsets under random
// operations, while keeping few ranges for mostly contiguous offsets.
func TestOffsetSetMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s offsetSet
	want := map[int64]bool{}
	for range 20000 {
		o := rng.Int64N(300)
		switch rng.IntN(4) {
		case 0, 1:
			s.add(o)
			want[o] = true
		case 2:
			s.remove(o)
			delete(want, o)
		case 3:
			s.dropBelow(o / 4)
			for k := range want {
				if k < o/4 {
					delete(want, k)
				}
			}
		}
		require.EqualValues(t, len(want), s.len())
	}
	for o := int64(-1); o < 301; o++ {
		require.Equal(t, want[o], s.contains(o), "offset %d", o)
	}
	var fromMap int64
	for k := range want {
		if k >= 50 && k < 200 {
			fromMap++
		}
	}
	require.Equal(t, fromMap, s.countIn(50, 200))
	for i := 1; i < len(s.ranges); i++ {
		require.Greater(t, s.ranges[i].first, s.ranges[i-1].last+1, "ranges stay disjoint and non-adjacent")
	}
}

func TestOffsetSetCompressesContiguousAcks(t *testing.T) {
	var s offsetSet
	for o := int64(1); o <= 1_000_000; o++ {
		s.add(o)
	}
	require.Len(t, s.ranges, 1)
	last, ok := s.takeFrom(1)
	require.True(t, ok)
	require.EqualValues(t, 1_000_000, last)
	require.Zero(t, s.len())
}

func TestSkipToJumpsOverAckedOffsetsAfterTheNewStart(t *testing.T) {
	p := newPartitionState(logid.Partition("00000000-0000-0000-0000-000000000000", 0), false)
	p.settle(5)
	p.settle(6)
	p.skipTo(5)
	require.EqualValues(t, 7, p.ackFloor, "retention moved the start to 5, and 5 and 6 were already acked")
	require.Zero(t, p.acked.len())
}
