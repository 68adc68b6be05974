package groups

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []entry{
		{key: []byte("k"), value: []byte("v")},
		{key: []byte("k")},                  // a tombstone
		{key: []byte("k"), value: []byte{}}, // an empty value is not a tombstone
		{},                                  // a checkpoint marker
	} {
		got, err := decodeEntry(e.encode())
		require.NoError(t, err)
		require.Equal(t, e.key, nonNilBytes(got.key, e.key))
		require.Equal(t, e.value == nil, got.value == nil)
		require.Equal(t, string(e.value), string(got.value))
	}
	for _, bad := range [][]byte{nil, {0, 0, 0}, {0, 0, 0, 5, 'k'}, {0, 0, 0, 1, 'k', 0, 0, 0, 3, 'v'}, {0, 0, 0, 1, 'k', 0xff, 0xff, 0xff, 0xfe}} {
		_, err := decodeEntry(bad)
		require.Error(t, err, "%v", bad)
	}
}

func nonNilBytes(got, want []byte) []byte {
	if len(got) == 0 && len(want) == 0 {
		return want
	}
	return got
}

// TestReplayLatestWinsAndTombstones replays a log: the latest value of a
// key wins, an offset tombstone deletes one offset, a group tombstone
// deletes the group with its offsets, and what comes after it lives.
func TestReplayLatestWinsAndTombstones(t *testing.T) {
	tp0, tp1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	log := []entry{
		offsetEntry("p/g", tp0, &Offset{Offset: 1}),
		offsetEntry("p/g", tp1, &Offset{Offset: 2}),
		groupEntry("p/g", &kmsg.GroupMetadataValue{ProtocolType: "consumer", Generation: 3}),
		offsetEntry("p/g", tp0, &Offset{Offset: 7, Metadata: "m"}),
		offsetEntry("p/g", tp1, nil),
		offsetEntry("p/h", tp0, &Offset{Offset: 9}),
		groupEntry("p/h", nil),
		offsetEntry("p/h", tp1, &Offset{Offset: 10}),
		{}, // a checkpoint marker
	}
	metas := map[string]*kmsg.GroupMetadataValue{}
	offsets := map[string]map[TopicPartition]Offset{}
	for _, e := range log {
		require.NoError(t, replay(e.encode(), metas, offsets))
	}
	require.Equal(t, map[TopicPartition]Offset{tp0: {Offset: 7, Metadata: "m"}}, offsets["p/g"])
	require.Equal(t, map[TopicPartition]Offset{tp1: {Offset: 10}}, offsets["p/h"])
	require.Equal(t, int32(3), metas["p/g"].Generation)
	require.NotContains(t, metas, "p/h")
}

// FuzzReplay feeds arbitrary record payloads to the replay: it never
// panics, whatever a damaged or foreign log holds.
func FuzzReplay(f *testing.F) {
	f.Add(offsetEntry("p/g", TopicPartition{"t", 0}, &Offset{Offset: 1}).encode())
	f.Add(groupEntry("p/g", &kmsg.GroupMetadataValue{ProtocolType: "consumer", Members: []kmsg.GroupMetadataValueMember{{MemberID: "m"}}}).encode())
	f.Add(groupEntry("p/g", nil).encode())
	f.Add(entry{}.encode())
	f.Fuzz(func(t *testing.T, p []byte) {
		_ = replay(p, map[string]*kmsg.GroupMetadataValue{}, map[string]map[TopicPartition]Offset{})
	})
}
