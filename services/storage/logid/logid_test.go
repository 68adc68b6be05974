package logid

import (
	"testing"

	"github.com/stretchr/testify/require"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
)

func TestDirsRoundTripAndValidate(t *testing.T) {
	q, g := "0b7e1f5c-5a4e-4b8e-9f0e-1c2d3e4f5a6b", "g-1b7e1f5c-5a4e-4b8e-9f0e-1c2d3e4f5a6b"
	for _, id := range []ID{
		Partition(q, 3), GroupState(q, g), DeadLetters(q, g), DeadLetterState(q, g),
		BroadcastState(q, g, "c.1"), TimerBucket(q, 493000), KafkaGroups(5),
	} {
		require.NoError(t, Validate(id), Key(id))
		back, ok := FromDir(Dir(id))
		require.True(t, ok, Dir(id))
		require.Equal(t, Key(id), Key(back))
		require.NotEmpty(t, Describe(id))
	}
	for _, bad := range []ID{
		nil, &storagev1.LogId{}, Partition("nope", 0), Partition(q, -1), GroupState(q, "x"),
		BroadcastState(q, g, "bad/id"), TimerBucket(q, -1), &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_KAFKA_GROUPS, Shard: -1},
		&storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_KAFKA_GROUPS, QueueId: q},
	} {
		require.Error(t, Validate(bad), "%v", bad)
	}
	for _, dir := range []string{"q/x/0", "k/other/1", "z/" + q + "/0", "q/" + q + "/01", "d/" + q} {
		_, ok := FromDir(dir)
		require.False(t, ok, dir)
	}
}
