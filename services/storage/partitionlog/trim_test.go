package partitionlog

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTrimBeforeDropsOnlyWholeSegmentsBelowTheOffset(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), SegmentBytes: 1024})
	require.NoError(t, err)
	defer l.Close()
	for i := range 100 {
		_, err := l.Append(context.Background(), []Record{{Timestamp: int64(i), Data: make([]byte, 100)}})
		require.NoError(t, err)
	}
	n, err := l.TrimBefore(50)
	require.NoError(t, err)
	require.Positive(t, n)
	require.LessOrEqual(t, l.StartOffset(), int64(50), "the segment holding offset 50 stays")
	require.Positive(t, l.StartOffset())
	got, err := l.Read(50, 1)
	require.NoError(t, err)
	require.EqualValues(t, 50, got[0].Offset)
	_, err = l.Read(0, 1)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	n, err = l.TrimBefore(1 << 40)
	require.NoError(t, err)
	require.EqualValues(t, 100, l.NextOffset(), "the active segment is never trimmed")
	_ = n
}
