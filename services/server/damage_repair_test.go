package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// metricValue sums the samples of a counter on a node's /metrics whose
// labels include label.
func metricValue(t *testing.T, s *testserver.Server, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		sum += v
	}
	require.NoError(t, sc.Err())
	return sum
}

// segmentFiles returns the contents of a log directory's segment files by
// name.
func segmentFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, s := range segs {
		data, err := os.ReadFile(s)
		require.NoError(t, err)
		out[filepath.Base(s)] = data
	}
	return out
}

// repairSetup loads a replicated one-partition queue on three nodes with
// messages in 40 batches, and waits until every replica has all of them.
func repairSetup(t *testing.T, extra ...string) (nodes []*testserver.Server, q *dmsv1.Queue, g *dmsv1.ConsumerGroup, sent []string, partDir func(*testserver.Server) string) {
	t.Helper()
	_, nodes = startCluster(t, 3, extra...)
	q = nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "repaired", PartitionCount: 1})
	g = nodes[0].CreateGroup(t, q, "g")
	for i := range 40 {
		batch := make([]string, 5)
		for j := range batch {
			batch[j] = fmt.Sprintf("m-%03d-%s", i*5+j, strings.Repeat("x", 40))
		}
		nodes[i%3].Send(t, q, batch...)
		sent = append(sent, batch...)
	}
	partDir = func(s *testserver.Server) string { return filepath.Join(s.DataDir, "storage", "q", q.GetId(), "0") }
	for _, s := range nodes {
		require.Eventually(t, func() bool {
			bs := partitionBatches(t, partDir(s))
			return len(bs) > 0 && bs[len(bs)-1].lastOf == int64(len(sent)-1)
		}, 30*time.Second, 20*time.Millisecond, "%s has every batch", s.NodeName)
	}
	return nodes, q, g, sent, partDir
}

func nodeNamed(nodes []*testserver.Server, name string) *testserver.Server {
	i := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == name })
	if i < 0 {
		return nil
	}
	return nodes[i]
}

// damageBatch overwrites 8 bytes inside a batch's records, which its CRC
// then fails.
func damageBatch(t *testing.T, b segmentBatch) {
	t.Helper()
	f, err := os.OpenFile(b.file, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("DAMAGED!"), b.pos+(b.end-b.pos)/2)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// waitRepaired waits until node s counts a repaired queue partition range
// and the unit has three in-sync replicas again.
func waitRepaired(t *testing.T, s *testserver.Server, q *dmsv1.Queue) {
	t.Helper()
	require.Eventually(t, func() bool {
		return metricValue(t, s, "dms_storage_repaired_ranges_total", `kind="queue_partition"`) >= 1
	}, 60*time.Second, 50*time.Millisecond, "%s repairs its copy from a replica", s.NodeName)
	require.Eventually(t, func() bool {
		return len(placementOf(t, s, q.GetId())[0].GetIsr()) == 3
	}, 60*time.Second, 50*time.Millisecond, "the repaired copy rejoins the in-sync replicas")
}

// electLeader makes node lead the queue's partition.
func electLeader(t *testing.T, via *testserver.Server, q *dmsv1.Queue, node string) {
	t.Helper()
	u := placementOf(t, via, q.GetId())[0]
	_, err := metadatav1.NewMetadataServiceClient(via.Internal).ElectLeader(context.Background(), &metadatav1.ElectLeaderRequest{Unit: u.GetUnit(), Node: node})
	require.NoError(t, err)
}

// A follower whose copy of a partition is damaged (found when it opens the
// log after a restart) fetches the damaged range again from its leader
// instead of keeping it lost: its segment files end up byte for byte the
// leader's, and once it leads, every acknowledged message is delivered from
// its copy.
func TestDamagedFollowerCopyIsRepairedFromTheLeader(t *testing.T) {
	nodes, q, g, sent, partDir := repairSetup(t)
	u := placementOf(t, nodes[0], q.GetId())[0]
	leader := nodeNamed(nodes, u.GetLeader())
	var follower *testserver.Server
	for _, r := range u.GetReplicas() {
		if r != u.GetLeader() {
			follower = nodeNamed(nodes, r)
			break
		}
	}
	follower.RestartWith(t, func() {
		bs := partitionBatches(t, partDir(follower))
		damageBatch(t, bs[len(bs)/2])
	})
	waitRepaired(t, follower, q)
	require.Equal(t, segmentFiles(t, partDir(leader)), segmentFiles(t, partDir(follower)), "the repaired copy is the leader's")
	quarantined, err := filepath.Glob(filepath.Join(partDir(follower), "*.quarantine"))
	require.NoError(t, err)
	require.NotEmpty(t, quarantined, "the damaged bytes are kept")

	electLeader(t, nodes[0], q, follower.NodeName)
	got := receiveAll(t, nodes[0], g, len(sent))
	require.ElementsMatch(t, sent, got)
}

// A leader whose copy is damaged (in a sealed segment, which nothing reads
// until a consumer does) does not serve the range as lost while a follower
// has it: it hands the partition to that follower and repairs its copy from
// it; the consumer gets every acknowledged message.
func TestDamagedLeaderCopyHandsOffAndIsRepaired(t *testing.T) {
	nodes, q, g, sent, partDir := repairSetup(t, "-storage.segment-bytes", "4096", "-storage.scrub-bytes-per-second", "0")
	u := placementOf(t, nodes[0], q.GetId())[0]
	victim := nodeNamed(nodes, u.GetLeader())
	var damaged segmentBatch
	victim.RestartWith(t, func() {
		bs := partitionBatches(t, partDir(victim))
		require.NotEqual(t, bs[0].file, bs[len(bs)-1].file, "the partition has sealed segments")
		damaged = bs[2]
		require.Equal(t, bs[0].file, damaged.file)
		damageBatch(t, damaged)
	})
	// Back as a follower (its copy looks whole: only the last segment is
	// checked at open, and the scrubber is off), in sync again, it is made
	// leader before anything reads the damaged segment.
	require.Eventually(t, func() bool {
		return len(placementOf(t, nodes[0], q.GetId())[0].GetIsr()) == 3
	}, 60*time.Second, 50*time.Millisecond, "the restarted node rejoins the in-sync replicas")
	electLeader(t, nodes[0], q, victim.NodeName)

	got := receiveAll(t, nodes[0], g, len(sent))
	require.ElementsMatch(t, sent, got, "every acknowledged message is delivered, none skipped as lost")
	waitRepaired(t, victim, q)
	now := placementOf(t, nodes[0], q.GetId())[0]
	require.NotEqual(t, victim.NodeName, now.GetLeader(), "the damaged copy handed off its leadership")
	require.Equal(t, segmentFiles(t, partDir(nodeNamed(nodes, now.GetLeader()))), segmentFiles(t, partDir(victim)), "the repaired copy is the new leader's")
}

// A follower in sync whose sealed segment rots while it runs: the scrubber
// finds it, the follower asks its leader for the range, the leader drops it
// from the in-sync replicas (it no longer has what it acknowledged), and
// only then does it truncate and fetch again; it rejoins with a copy equal
// to the leader's, and serves every message once it leads.
func TestScrubbedFollowerCopyIsRepairedWhileInSync(t *testing.T) {
	nodes, q, g, sent, partDir := repairSetup(t, "-storage.segment-bytes", "4096", "-storage.scrub-interval", "200ms")
	u := placementOf(t, nodes[0], q.GetId())[0]
	require.Len(t, u.GetIsr(), 3)
	leader := nodeNamed(nodes, u.GetLeader())
	var follower *testserver.Server
	for _, r := range u.GetReplicas() {
		if r != u.GetLeader() {
			follower = nodeNamed(nodes, r)
			break
		}
	}
	bs := partitionBatches(t, partDir(follower))
	require.NotEqual(t, bs[0].file, bs[len(bs)-1].file, "the partition has sealed segments")
	damageBatch(t, bs[1])
	waitRepaired(t, follower, q)
	require.Equal(t, segmentFiles(t, partDir(leader)), segmentFiles(t, partDir(follower)), "the repaired copy is the leader's")
	require.GreaterOrEqual(t, metricValue(t, follower, "dms_storage_damaged_ranges_total", `kind="queue_partition"`), 1.0)

	electLeader(t, nodes[0], q, follower.NodeName)
	got := receiveAll(t, nodes[0], g, len(sent))
	require.ElementsMatch(t, sent, got)
}

// A leader whose copy lost a range that no other replica has (its only
// follower was down while the range was written) sends the range to the
// follower as lost when it comes back: the follower records it lost too and
// catches up past it, instead of stalling there for good and keeping the
// partition below two in-sync replicas. Consumers skip exactly that range.
func TestRangeNoReplicaHasIsReplicatedAsLost(t *testing.T) {
	_, nodes := startCluster(t, 3, "-storage.min-insync-replicas", "1", "-storage.scrub-bytes-per-second", "0")
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "lossy", PartitionCount: 1, ReplicationFactor: 2})
	g := nodes[0].CreateGroup(t, q, "g")
	u := placementOf(t, nodes[0], q.GetId())[0]
	require.Len(t, u.GetReplicas(), 2)
	leader := nodeNamed(nodes, u.GetLeader())
	var follower *testserver.Server
	for _, r := range u.GetReplicas() {
		if r != u.GetLeader() {
			follower = nodeNamed(nodes, r)
		}
	}
	partDir := filepath.Join(leader.DataDir, "storage", "q", q.GetId(), "0")
	var sent []string
	var damaged segmentBatch
	follower.RestartWith(t, func() {
		require.Eventually(t, func() bool {
			return slices.Equal(placementOf(t, leader, q.GetId())[0].GetIsr(), []string{leader.NodeName})
		}, 30*time.Second, 20*time.Millisecond, "the stopped follower leaves the in-sync replicas")
		for i := range 20 {
			batch := make([]string, 5)
			for j := range batch {
				batch[j] = fmt.Sprintf("m-%03d", i*5+j)
			}
			leader.Send(t, q, batch...)
			sent = append(sent, batch...)
		}
		bs := partitionBatches(t, partDir)
		damaged = bs[len(bs)/2]
		damageBatch(t, damaged)
	})
	require.Eventually(t, func() bool {
		return len(placementOf(t, leader, q.GetId())[0].GetIsr()) == 2
	}, 60*time.Second, 50*time.Millisecond, "the follower catches up past the lost range and is in sync again")
	var lostInCopy []segmentBatch
	for _, b := range partitionBatches(t, filepath.Join(follower.DataDir, "storage", "q", q.GetId(), "0")) {
		data, err := os.ReadFile(b.file)
		require.NoError(t, err)
		if data[b.pos+17] == 0 && data[b.pos+18] == 2 { // flags: lost
			lostInCopy = append(lostInCopy, b)
		}
	}
	require.Len(t, lostInCopy, 1)
	require.Equal(t, [2]int64{damaged.firstOff, damaged.lastOf}, [2]int64{lostInCopy[0].firstOff, lostInCopy[0].lastOf})

	got := receiveAll(t, nodes[0], g, len(sent)-int(damaged.lastOf-damaged.firstOff+1))
	require.ElementsMatch(t, slices.Delete(slices.Clone(sent), int(damaged.firstOff), int(damaged.lastOf+1)), got)
	require.Equal(t, leader.NodeName, placementOf(t, leader, q.GetId())[0].GetLeader(),
		"no hand-off to a follower that has the range only as lost")
}
