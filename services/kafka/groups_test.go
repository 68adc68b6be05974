package kafka_test

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/kafka/groups"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// defaultProject is the project Kafka connections act in (the default of
// -protocols.default-project).
const defaultProject = "0123456789abcdef0123456789abcdef"

// groupFlags start a server whose groups rebalance soon after their first
// member joins (Kafka's 3 s is for production).
var groupFlags = []string{"-kafka.group-initial-rebalance-delay=100ms"}

func createTopic(t testing.TB, srv *testserver.Server, name string, partitions int32) {
	t.Helper()
	srv.CreateQueue(t, defaultProject, &dmsv1.Queue{DisplayName: name, Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: partitions})
}

// groupMember is a classic consumer group member driven by hand through a
// real client (franz-go routes its requests to the coordinator): join,
// sync (assigning round-robin when it leads), heartbeat until told to
// rejoin, leave when stopped. What it holds is read by the test.
type groupMember struct {
	t          testing.TB
	cl         *kgo.Client
	group      string
	topic      string
	partitions int32
	instance   *string

	mu       sync.Mutex
	id       string
	gen      int32
	assigned []int32
	lastErr  int16

	stop, done chan struct{}
}

func startMember(t testing.TB, addr, group, topic string, partitions int32, instance *string) *groupMember {
	m := &groupMember{t: t, cl: newClient(t, addr), group: group, topic: topic, partitions: partitions, instance: instance,
		stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	t.Cleanup(m.leave)
	return m
}

// state returns the generation the member is in and its partitions.
func (m *groupMember) state() (string, int32, []int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, m.gen, slices.Clone(m.assigned)
}

func (m *groupMember) set(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
}

// leave stops the member, which sends LeaveGroup.
func (m *groupMember) leave() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

func (m *groupMember) stopped() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

func (m *groupMember) run() {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
		case <-m.done:
		}
		cancel()
	}()
	memberID := ""
	defer func() {
		if memberID == "" {
			return
		}
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.Group = m.group
		lm := kmsg.NewLeaveGroupRequestMember()
		lm.MemberID, lm.InstanceID = memberID, m.instance
		leave.Members = append(leave.Members, lm)
		lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer lcancel()
		_, _ = leave.RequestWith(lctx, m.cl)
	}()
	for !m.stopped() {
		join := kmsg.NewPtrJoinGroupRequest()
		join.Group, join.MemberID, join.InstanceID = m.group, memberID, m.instance
		join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 30000, 30000
		join.ProtocolType = "consumer"
		meta := kmsg.ConsumerMemberMetadata{Topics: []string{m.topic}}
		join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "roundrobin", Metadata: meta.AppendTo(nil)}}
		jr, err := join.RequestWith(ctx, m.cl)
		if err != nil {
			continue
		}
		m.set(func() { m.lastErr = jr.ErrorCode })
		switch jr.ErrorCode {
		case 0:
		case kerr.MemberIDRequired.Code:
			memberID = jr.MemberID
			continue
		case kerr.UnknownMemberID.Code:
			memberID = ""
			continue
		default:
			time.Sleep(50 * time.Millisecond)
			continue
		}
		memberID = jr.MemberID
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.MemberID, sync.Generation, sync.InstanceID = m.group, memberID, jr.Generation, m.instance
		if jr.LeaderID == memberID {
			sync.GroupAssignment = assignRoundRobin(m.topic, m.partitions, jr.Members)
		}
		sr, err := sync.RequestWith(ctx, m.cl)
		if err != nil || sr.ErrorCode != 0 {
			if err == nil && sr.ErrorCode == kerr.UnknownMemberID.Code {
				memberID = ""
			}
			continue
		}
		var a kmsg.ConsumerMemberAssignment
		require.NoError(m.t, a.ReadFrom(sr.MemberAssignment))
		var parts []int32
		for _, t := range a.Topics {
			parts = append(parts, t.Partitions...)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		m.set(func() { m.id, m.gen, m.assigned = memberID, jr.Generation, parts })
		for !m.stopped() {
			select {
			case <-m.stop:
			case <-time.After(50 * time.Millisecond):
			}
			hb := kmsg.NewPtrHeartbeatRequest()
			hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = m.group, memberID, jr.Generation, m.instance
			hr, err := hb.RequestWith(ctx, m.cl)
			if err != nil {
				continue
			}
			if hr.ErrorCode != 0 {
				m.set(func() { m.lastErr = hr.ErrorCode })
				if hr.ErrorCode == kerr.UnknownMemberID.Code || hr.ErrorCode == kerr.FencedInstanceID.Code {
					memberID = ""
				}
				break
			}
		}
	}
}

// assignRoundRobin deals a topic's partitions to the members in member id
// order.
func assignRoundRobin(topic string, partitions int32, members []kmsg.JoinGroupResponseMember) []kmsg.SyncGroupRequestGroupAssignment {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.MemberID
	}
	sort.Strings(ids)
	byMember := map[string][]int32{}
	for p := range partitions {
		id := ids[int(p)%len(ids)]
		byMember[id] = append(byMember[id], p)
	}
	var out []kmsg.SyncGroupRequestGroupAssignment
	for _, id := range ids {
		a := kmsg.ConsumerMemberAssignment{Topics: []kmsg.ConsumerMemberAssignmentTopic{{Topic: topic, Partitions: byMember[id]}}}
		out = append(out, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a.AppendTo(nil)})
	}
	return out
}

// settled reports whether the members are all in one generation, newer
// than after, and share the topic's partitions among them, each its own.
func settled(members []*groupMember, partitions int32, after int32) (int32, bool) {
	var gen int32 = -1
	var all []int32
	for _, m := range members {
		_, g, parts := m.state()
		if g <= after || (gen != -1 && g != gen) {
			return 0, false
		}
		gen = g
		all = append(all, parts...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if int32(len(all)) != partitions {
		return 0, false
	}
	for i, p := range all {
		if p != int32(i) {
			return 0, false
		}
	}
	return gen, true
}

// TestGroupOfThreeRebalancesWhenMembersLeaveAndJoin runs three members of a
// group through real clients: they settle in one generation with the
// partitions shared; one leaves and the two others take its partitions in
// a newer generation; a fourth joins and they are three again. DescribeGroups
// (kadm) shows the members and their assignments.
func TestGroupOfThreeRebalancesWhenMembersLeaveAndJoin(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 6)
	var members []*groupMember
	for range 3 {
		members = append(members, startMember(t, srv.KafkaAddr, "billing", "orders", 6, nil))
	}
	var gen int32
	require.Eventually(t, func() bool {
		var ok bool
		gen, ok = settled(members, 6, 0)
		return ok
	}, time.Minute, 20*time.Millisecond, "three members never settled")
	for _, m := range members {
		_, _, parts := m.state()
		require.Len(t, parts, 2)
	}

	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	described, err := adm.DescribeGroups(context.Background(), "billing")
	require.NoError(t, err)
	d := described["billing"]
	require.NoError(t, d.Err)
	require.Equal(t, "Stable", d.State)
	require.Equal(t, "consumer", d.ProtocolType)
	require.Equal(t, "roundrobin", d.Protocol)
	require.Len(t, d.Members, 3)
	for _, dm := range d.Members {
		a, ok := dm.Assigned.AsConsumer()
		require.True(t, ok)
		require.Len(t, a.Topics, 1)
		require.Len(t, a.Topics[0].Partitions, 2)
	}

	members[2].leave()
	members = members[:2]
	require.Eventually(t, func() bool {
		next, ok := settled(members, 6, gen)
		if ok {
			gen = next
		}
		return ok
	}, time.Minute, 20*time.Millisecond, "two members never took over the partitions of the one that left")

	members = append(members, startMember(t, srv.KafkaAddr, "billing", "orders", 6, nil))
	require.Eventually(t, func() bool {
		_, ok := settled(members, 6, gen)
		return ok
	}, time.Minute, 20*time.Millisecond, "a joining member never got partitions")
}

// commit commits offsets outside group management (generation -1), as
// admin tools do.
func commit(t testing.TB, adm *kadm.Client, group string, offsets map[string]map[int32]int64) {
	t.Helper()
	var os kadm.Offsets
	for topic, parts := range offsets {
		for p, o := range parts {
			os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1, Metadata: "m"})
		}
	}
	resps, err := adm.CommitOffsets(context.Background(), group, os)
	require.NoError(t, err)
	require.NoError(t, resps.Error())
}

func fetched(t testing.TB, adm *kadm.Client, group string) map[string]map[int32]int64 {
	t.Helper()
	resps, err := adm.FetchOffsets(context.Background(), group)
	require.NoError(t, err)
	require.NoError(t, resps.Error())
	out := map[string]map[int32]int64{}
	resps.Each(func(o kadm.OffsetResponse) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out
}

// TestCommittedOffsetsSurviveARestart commits offsets, restarts the server
// on its data directory and reads them back; a group that was Stable is
// Stable again with its members, whose generation still holds.
func TestCommittedOffsetsSurviveARestart(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 3)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	want := map[string]map[int32]int64{"orders": {0: 10, 1: 20, 2: 30}}
	commit(t, adm, "billing", want)
	commit(t, adm, "billing", map[string]map[int32]int64{"orders": {1: 21}})
	want["orders"][1] = 21

	// A member group in another shard (most likely): settled, then the
	// server restarts under it.
	m := startMember(t, srv.KafkaAddr, "audit", "orders", 3, nil)
	require.Eventually(t, func() bool { _, ok := settled([]*groupMember{m}, 3, 0); return ok }, time.Minute, 20*time.Millisecond)
	id, gen, _ := m.state()
	m.leave()

	srv.Restart(t)
	adm = kadm.NewClient(newClient(t, srv.KafkaAddr))
	require.Equal(t, want, fetched(t, adm, "billing"))
	described, err := adm.DescribeGroups(context.Background(), "audit")
	require.NoError(t, err)
	require.Equal(t, "Empty", described["audit"].State, "the member left before the restart")

	// A heartbeat of the old generation is refused as the group moved on.
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "audit", id, gen
	hr, err := hb.RequestWith(context.Background(), newClient(t, srv.KafkaAddr))
	require.NoError(t, err)
	require.Equal(t, kerr.UnknownMemberID.Code, hr.ErrorCode)
}

// TestStableGroupIsStableAfterARestart restarts the server under a Stable
// group: the member's heartbeats of its generation are accepted again.
func TestStableGroupIsStableAfterARestart(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 2)
	// A member joined without MEMBER_ID_REQUIRED (v3) that never
	// leaves.
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = "audit", 30000, 30000, "consumer"
	join.Version = 3 // no MEMBER_ID_REQUIRED round
	meta := kmsg.ConsumerMemberMetadata{Topics: []string{"orders"}}
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "roundrobin", Metadata: meta.AppendTo(nil)}}
	c := dialRaw(t, srv.KafkaAddr)
	jr := c.roundTrip(join).(*kmsg.JoinGroupResponse)
	require.Zero(t, jr.ErrorCode)
	require.Equal(t, int32(1), jr.Generation)
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "audit", jr.MemberID, jr.Generation
	sync.GroupAssignment = assignRoundRobin("orders", 2, jr.Members)
	sr := c.roundTrip(sync).(*kmsg.SyncGroupResponse)
	require.Zero(t, sr.ErrorCode)

	srv.Restart(t)
	c = dialRaw(t, srv.KafkaAddr)
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "audit", jr.MemberID, jr.Generation
	require.Eventually(t, func() bool {
		hr := c.roundTrip(hb).(*kmsg.HeartbeatResponse)
		return hr.ErrorCode != kerr.CoordinatorLoadInProgress.Code
	}, time.Minute, 20*time.Millisecond)
	hr := c.roundTrip(hb).(*kmsg.HeartbeatResponse)
	require.Zero(t, hr.ErrorCode, kerr.ErrorForCode(hr.ErrorCode))
	sync.GroupAssignment = nil
	sr = c.roundTrip(sync).(*kmsg.SyncGroupResponse)
	require.Zero(t, sr.ErrorCode)
	var a kmsg.ConsumerMemberAssignment
	require.NoError(t, a.ReadFrom(sr.MemberAssignment))
	require.Equal(t, []int32{0, 1}, a.Topics[0].Partitions, "the assignment came back from the log")
}

// TestOffsetFetchMultiGroupLayout asks for several groups in one v8
// request, the layout Java clients use, and one group in the v7 and v1
// layouts.
func TestOffsetFetchMultiGroupLayout(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 2)
	createTopic(t, srv, "refunds", 1)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	commit(t, adm, "a", map[string]map[int32]int64{"orders": {0: 5, 1: 6}, "refunds": {0: 7}})
	commit(t, adm, "b", map[string]map[int32]int64{"orders": {1: 9}})
	c := dialRaw(t, srv.KafkaAddr)

	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	req.Groups = []kmsg.OffsetFetchRequestGroup{
		{Group: "a"}, // every partition with an offset
		{Group: "b", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "orders", Partitions: []int32{0, 1}}}},
		{Group: "none", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "orders", Partitions: []int32{0}}}},
	}
	resp := c.roundTrip(req).(*kmsg.OffsetFetchResponse)
	require.Len(t, resp.Groups, 3)
	got := map[string]map[string]int64{}
	for _, g := range resp.Groups {
		require.Zero(t, g.ErrorCode, g.Group)
		got[g.Group] = map[string]int64{}
		for _, tp := range g.Topics {
			for _, p := range tp.Partitions {
				require.Zero(t, p.ErrorCode)
				got[g.Group][tp.Topic+"/"+string(rune('0'+p.Partition))] = p.Offset
			}
		}
	}
	require.Equal(t, map[string]map[string]int64{
		"a":    {"orders/0": 5, "orders/1": 6, "refunds/0": 7},
		"b":    {"orders/0": -1, "orders/1": 9},
		"none": {"orders/0": -1},
	}, got)

	for _, v := range []int16{7, 1} {
		old := kmsg.NewPtrOffsetFetchRequest()
		old.Version, old.Group = v, "a"
		old.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "refunds", Partitions: []int32{0}}}
		or := c.roundTrip(old).(*kmsg.OffsetFetchResponse)
		require.Zero(t, or.ErrorCode)
		require.Len(t, or.Topics, 1)
		require.Equal(t, int64(7), or.Topics[0].Partitions[0].Offset, "v%d", v)
	}
}

// TestListDescribeAndDeleteGroups drives the admin calls with kadm: a group
// with a member cannot be deleted; an empty one is, with its offsets.
func TestListDescribeAndDeleteGroups(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 2)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	ctx := context.Background()
	commit(t, adm, "offsets-only", map[string]map[int32]int64{"orders": {0: 3}})
	m := startMember(t, srv.KafkaAddr, "live", "orders", 2, nil)
	require.Eventually(t, func() bool { _, ok := settled([]*groupMember{m}, 2, 0); return ok }, time.Minute, 20*time.Millisecond)

	listed, err := adm.ListGroups(ctx)
	require.NoError(t, err)
	states := map[string]string{}
	for _, g := range listed.Sorted() {
		states[g.Group] = g.State
	}
	require.Equal(t, map[string]string{"offsets-only": "Empty", "live": "Stable"}, states)
	stable, err := adm.ListGroups(ctx, "Stable")
	require.NoError(t, err)
	require.Equal(t, []string{"live"}, stable.Groups())

	described, err := adm.DescribeGroups(ctx, "live", "offsets-only", "nope")
	require.NoError(t, err)
	require.Equal(t, "Stable", described["live"].State)
	require.Len(t, described["live"].Members, 1)
	require.Equal(t, "Empty", described["offsets-only"].State)
	require.Equal(t, "Dead", described["nope"].State)
	require.ErrorIs(t, described["nope"].Err, kerr.GroupIDNotFound)

	deleted, err := adm.DeleteGroups(ctx, "live", "offsets-only", "nope")
	require.NoError(t, err)
	require.ErrorIs(t, deleted["live"].Err, kerr.NonEmptyGroup)
	require.NoError(t, deleted["offsets-only"].Err)
	require.ErrorIs(t, deleted["nope"].Err, kerr.GroupIDNotFound)
	require.Empty(t, fetched(t, adm, "offsets-only"))

	m.leave()
	require.Eventually(t, func() bool {
		d, err := adm.DescribeGroups(ctx, "live")
		return err == nil && d["live"].State == "Empty"
	}, time.Minute, 20*time.Millisecond)
	deleted, err = adm.DeleteGroups(ctx, "live")
	require.NoError(t, err)
	require.NoError(t, deleted["live"].Err)
	listed, err = adm.ListGroups(ctx)
	require.NoError(t, err)
	require.Empty(t, listed.Groups())

	// Deleted stays deleted after a restart.
	srv.Restart(t)
	adm = kadm.NewClient(newClient(t, srv.KafkaAddr))
	listed, err = adm.ListGroups(ctx)
	require.NoError(t, err)
	require.Empty(t, listed.Groups())
}

func joinReq(version int16, group, memberID string, instance *string) *kmsg.JoinGroupRequest {
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.MemberID, join.InstanceID = version, group, memberID, instance
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = 30000, 30000, "consumer"
	meta := kmsg.ConsumerMemberMetadata{Topics: []string{"orders"}}
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "roundrobin", Metadata: meta.AppendTo(nil)}}
	return join
}

func heartbeatCode(c *rawClient, group, memberID string, gen int32, instance *string) int16 {
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = 4, group, memberID, gen, instance
	return c.roundTrip(hb).(*kmsg.HeartbeatResponse).ErrorCode
}

func commitCode(c *rawClient, group, memberID string, gen int32, topic string, partition int32, metadata string) int16 {
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.MemberID, oc.Generation = 8, group, memberID, gen
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset, p.Metadata = partition, 1, &metadata
	oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
	return c.roundTrip(oc).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

// TestGroupProtocolErrors checks the answers that tell a member what to do:
// MEMBER_ID_REQUIRED only from JoinGroup v4, ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS while a rebalance runs (and
// commits refused between join and sync), INCONSISTENT_GROUP_PROTOCOL,
// INVALID_SESSION_TIMEOUT, and the refusals of bad commits.
func TestGroupProtocolErrors(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 2)
	a, b := dialRaw(t, srv.KafkaAddr), dialRaw(t, srv.KafkaAddr)

	// v4 asks for a member id first; v3 joins at once.
	jr := a.roundTrip(joinReq(4, "g", "", nil)).(*kmsg.JoinGroupResponse)
	require.Equal(t, kerr.MemberIDRequired.Code, jr.ErrorCode)
	require.NotEmpty(t, jr.MemberID)
	jr = a.roundTrip(joinReq(4, "g", jr.MemberID, nil)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jr.ErrorCode)
	idA, gen := jr.MemberID, jr.Generation
	require.Equal(t, idA, jr.LeaderID)
	require.Len(t, jr.Members, 1)
	jr3 := b.roundTrip(joinReq(3, "other", "", nil)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jr3.ErrorCode)

	// Before SyncGroup (CompletingRebalance) a commit must wait.
	require.Equal(t, kerr.RebalanceInProgress.Code, commitCode(a, "g", idA, gen, "orders", 0, ""))
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "g", idA, gen+1
	require.Equal(t, kerr.IllegalGeneration.Code, a.roundTrip(sync).(*kmsg.SyncGroupResponse).ErrorCode)
	sync.Generation = gen
	sync.GroupAssignment = assignRoundRobin("orders", 2, jr.Members)
	require.Zero(t, a.roundTrip(sync).(*kmsg.SyncGroupResponse).ErrorCode)

	require.Zero(t, heartbeatCode(a, "g", idA, gen, nil))
	require.Equal(t, kerr.IllegalGeneration.Code, heartbeatCode(a, "g", idA, gen+1, nil))
	require.Equal(t, kerr.UnknownMemberID.Code, heartbeatCode(a, "g", "stranger", gen, nil))
	require.Equal(t, kerr.UnknownMemberID.Code, heartbeatCode(a, "nosuchgroup", idA, gen, nil))

	require.Zero(t, commitCode(a, "g", idA, gen, "orders", 0, ""))
	require.Equal(t, kerr.IllegalGeneration.Code, commitCode(a, "g", idA, gen-1, "orders", 0, ""))
	require.Equal(t, kerr.UnknownMemberID.Code, commitCode(a, "g", "stranger", gen, "orders", 0, ""))
	require.Equal(t, kerr.UnknownMemberID.Code, commitCode(a, "g", "", -1, "orders", 0, ""), "a group with members takes no commits from outside")
	require.Equal(t, kerr.UnknownTopicOrPartition.Code, commitCode(a, "g", idA, gen, "nosuchtopic", 0, ""))
	require.Equal(t, kerr.UnknownTopicOrPartition.Code, commitCode(a, "g", idA, gen, "orders", 2, ""))
	require.Equal(t, kerr.OffsetMetadataTooLarge.Code, commitCode(a, "g", idA, gen, "orders", 0, string(make([]byte, 4097))))

	// Another protocol type cannot join.
	bad := joinReq(4, "g", "", nil)
	bad.ProtocolType = "connect"
	require.Equal(t, kerr.InconsistentGroupProtocol.Code, b.roundTrip(bad).(*kmsg.JoinGroupResponse).ErrorCode)
	short := joinReq(4, "g", "", nil)
	short.SessionTimeoutMillis = 10
	require.Equal(t, kerr.InvalidSessionTimeout.Code, b.roundTrip(short).(*kmsg.JoinGroupResponse).ErrorCode)

	// A second member joins: the first is told to rejoin; its commits of
	// the current generation still count meanwhile.
	jrB := b.roundTrip(joinReq(4, "g", "", nil)).(*kmsg.JoinGroupResponse)
	require.Equal(t, kerr.MemberIDRequired.Code, jrB.ErrorCode)
	corrB := b.send(joinReq(4, "g", jrB.MemberID, nil))
	require.Eventually(t, func() bool {
		return heartbeatCode(a, "g", idA, gen, nil) == kerr.RebalanceInProgress.Code
	}, time.Minute, 20*time.Millisecond)
	require.Zero(t, commitCode(a, "g", idA, gen, "orders", 1, ""))
	jrA := a.roundTrip(joinReq(4, "g", idA, nil)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jrA.ErrorCode)
	resp, err := b.receive(joinReq(4, "g", jrB.MemberID, nil), corrB)
	require.NoError(t, err)
	require.Zero(t, resp.(*kmsg.JoinGroupResponse).ErrorCode)
	require.Equal(t, gen+1, jrA.Generation)
	require.Equal(t, jrA.Generation, resp.(*kmsg.JoinGroupResponse).Generation)
	require.Equal(t, idA, jrA.LeaderID, "the leader stays the leader")
	require.Len(t, jrA.Members, 2)
	require.Empty(t, resp.(*kmsg.JoinGroupResponse).Members, "only the leader gets the members")
	require.Equal(t, kerr.IllegalGeneration.Code, heartbeatCode(a, "g", idA, gen, nil))
}

// TestStaticMemberRejoinsWithoutRebalance checks group.instance.id: a
// static member joining again gets a new member id in the same generation,
// and the old id is fenced.
func TestStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 2)
	c := dialRaw(t, srv.KafkaAddr)
	instance := "consumer-1"
	jr := c.roundTrip(joinReq(5, "g", "", &instance)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jr.ErrorCode, "a static member needs no MEMBER_ID_REQUIRED round")
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version, sync.Group, sync.MemberID, sync.Generation, sync.InstanceID = 5, "g", jr.MemberID, jr.Generation, &instance
	sync.GroupAssignment = assignRoundRobin("orders", 2, jr.Members)
	require.Zero(t, c.roundTrip(sync).(*kmsg.SyncGroupResponse).ErrorCode)

	again := joinReq(9, "g", "", &instance)
	jr2 := c.roundTrip(again).(*kmsg.JoinGroupResponse)
	require.Zero(t, jr2.ErrorCode)
	require.NotEqual(t, jr.MemberID, jr2.MemberID)
	require.Equal(t, jr.Generation, jr2.Generation, "no rebalance")
	require.True(t, jr2.SkipAssignment, "the static leader keeps the assignment")
	require.Equal(t, kerr.FencedInstanceID.Code, heartbeatCode(c, "g", jr.MemberID, jr.Generation, &instance))
	require.Zero(t, heartbeatCode(c, "g", jr2.MemberID, jr2.Generation, &instance))
	sync.MemberID, sync.GroupAssignment = jr2.MemberID, nil
	sr := c.roundTrip(sync).(*kmsg.SyncGroupResponse)
	require.Zero(t, sr.ErrorCode)
	var a kmsg.ConsumerMemberAssignment
	require.NoError(t, a.ReadFrom(sr.MemberAssignment))
	require.Equal(t, []int32{0, 1}, a.Topics[0].Partitions)

	// Leaving by instance id empties the group.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group = 5, "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &instance}}
	lr := c.roundTrip(leave).(*kmsg.LeaveGroupResponse)
	require.Zero(t, lr.ErrorCode)
	require.Zero(t, lr.Members[0].ErrorCode)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	d, err := adm.DescribeGroups(context.Background(), "g")
	require.NoError(t, err)
	require.Equal(t, "Empty", d["g"].State)
}

// TestFindCoordinator checks v0-3 and the v4+ batched layout, and the
// refusal of transaction coordinators.
func TestFindCoordinator(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKey = 3, "g"
	r := c.roundTrip(fc).(*kmsg.FindCoordinatorResponse)
	require.Zero(t, r.ErrorCode)
	require.Equal(t, srv.KafkaAddr, hostPort(r.Host, r.Port))
	fc = kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKeys = 4, []string{"g1", "g2"}
	r = c.roundTrip(fc).(*kmsg.FindCoordinatorResponse)
	require.Len(t, r.Coordinators, 2)
	for i, k := range []string{"g1", "g2"} {
		require.Equal(t, k, r.Coordinators[i].Key)
		require.Zero(t, r.Coordinators[i].ErrorCode)
		require.Equal(t, srv.KafkaAddr, hostPort(r.Coordinators[i].Host, r.Coordinators[i].Port))
	}
	fc.CoordinatorType = 1
	r = c.roundTrip(fc).(*kmsg.FindCoordinatorResponse)
	require.Equal(t, kerr.TransactionalIDAuthorizationFailed.Code, r.Coordinators[0].ErrorCode, "the refusal transactional clients stop at")
}

// TestGroupLogIsCheckpointedAndTrimmed commits many times with a tiny
// checkpoint threshold and small segments: the shard's log is trimmed before its latest
// checkpoint, and a restart replays the checkpoint into the same offsets.
func TestGroupLogIsCheckpointedAndTrimmed(t *testing.T) {
	srv := startServer(t, append([]string{"-kafka.group-checkpoint-bytes=1", "-cluster.delivery-shards=8", "-storage.internal-segment-bytes=1024"}, groupFlags...)...)
	createTopic(t, srv, "orders", 2)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	for i := range int64(40) {
		commit(t, adm, "g", map[string]map[int32]int64{"orders": {0: i, 1: 2 * i}})
	}
	commit(t, adm, "deleted", map[string]map[int32]int64{"orders": {0: 1}})
	deleted, err := adm.DeleteGroups(context.Background(), "deleted")
	require.NoError(t, err)
	require.NoError(t, deleted.Error())
	commit(t, adm, "g", map[string]map[int32]int64{"orders": {1: 100}})

	log := logid.KafkaGroups(placement.ShardOf(groups.Key(defaultProject, "g"), 8))
	st := storagev1.NewStorageServiceClient(srv.Internal)
	require.Eventually(t, func() bool {
		info, err := st.GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{log}})
		return err == nil && info.GetLogs()[0].GetStartOffset() > 0
	}, time.Minute, 20*time.Millisecond, "the log was never trimmed")

	srv.Restart(t)
	adm = kadm.NewClient(newClient(t, srv.KafkaAddr))
	require.Equal(t, map[string]map[int32]int64{"orders": {0: 39, 1: 100}}, fetched(t, adm, "g"))
	require.Empty(t, fetched(t, adm, "deleted"))
	listed, err := adm.ListGroups(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"g"}, listed.Groups())
}

// TestGroupAPIsAdvertised pins the versions of the group APIs: the minima
// old clients need (librdkafka before 2.11 and kafka-go join with v0-v2;
// Java batches FindCoordinator v4+ and OffsetFetch v8+), and the share
// group APIs at KIP-932's GA version 1.
func TestGroupAPIsAdvertised(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	versions := c.roundTrip(&kmsg.ApiVersionsRequest{Version: 3}).(*kmsg.ApiVersionsResponse)
	got := map[int16][2]int16{}
	for _, k := range versions.ApiKeys {
		got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	for key, want := range map[kmsg.Key][2]int16{
		kmsg.OffsetCommit: {0, 9}, kmsg.OffsetFetch: {0, 9}, kmsg.FindCoordinator: {0, 6}, kmsg.JoinGroup: {0, 9},
		kmsg.Heartbeat: {0, 4}, kmsg.LeaveGroup: {0, 5}, kmsg.SyncGroup: {0, 5}, kmsg.DescribeGroups: {0, 6},
		kmsg.ListGroups: {0, 5}, kmsg.DeleteGroups: {0, 3}, kmsg.OffsetDelete: {0, 0},
		kmsg.ShareGroupHeartbeat: {1, 1}, kmsg.ShareGroupDescribe: {1, 1}, kmsg.ShareFetch: {1, 1}, kmsg.ShareAcknowledge: {1, 1},
	} {
		require.Equal(t, want, got[key.Int16()], key.Name())
	}
}

// TestRefusedJoinLeavesNoGroup checks that a JoinGroup refused (another
// protocol type against nothing, here no protocols) leaves no group behind
// for ListGroups or DescribeGroups.
func TestRefusedJoinLeavesNoGroup(t *testing.T) {
	srv := startServer(t, groupFlags...)
	c := dialRaw(t, srv.KafkaAddr)
	join := joinReq(4, "ghost", "", nil)
	join.Protocols = nil
	require.Equal(t, kerr.InconsistentGroupProtocol.Code, c.roundTrip(join).(*kmsg.JoinGroupResponse).ErrorCode)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	listed, err := adm.ListGroups(context.Background())
	require.NoError(t, err)
	require.Empty(t, listed.Groups())
	d, err := adm.DescribeGroups(context.Background(), "ghost")
	require.NoError(t, err)
	require.Equal(t, "Dead", d["ghost"].State)
}

// TestSilentMembersAreRemoved checks the two timers: a member that stops
// heartbeating is removed after its session timeout and the group
// rebalances without it; a member that does not rejoin a rebalance within
// the rebalance timeout is removed when it ends, and the others complete
// it without waiting longer.
func TestSilentMembersAreRemoved(t *testing.T) {
	srv := startServer(t, "-kafka.group-initial-rebalance-delay=0", "-kafka.group-min-session-timeout=100ms")
	createTopic(t, srv, "orders", 2)
	a, b := dialRaw(t, srv.KafkaAddr), dialRaw(t, srv.KafkaAddr)
	join := func(c *rawClient, memberID string, session int32) *kmsg.JoinGroupRequest {
		j := joinReq(3, "g", memberID, nil)
		j.SessionTimeoutMillis, j.RebalanceTimeoutMillis = session, 2000
		return j
	}
	syncAll := func(c *rawClient, jr *kmsg.JoinGroupResponse) {
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.MemberID, sync.Generation = "g", jr.MemberID, jr.Generation
		if jr.LeaderID == jr.MemberID {
			sync.GroupAssignment = assignRoundRobin("orders", 2, jr.Members)
		}
		require.Zero(t, c.roundTrip(sync).(*kmsg.SyncGroupResponse).ErrorCode)
	}

	// A joins with a long session, B with a short one; both sync.
	jrA := a.roundTrip(join(a, "", 30000)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jrA.ErrorCode)
	syncAll(a, jrA)
	corr := b.send(join(b, "", 500))
	require.Eventually(t, func() bool {
		return heartbeatCode(a, "g", jrA.MemberID, jrA.Generation, nil) == kerr.RebalanceInProgress.Code
	},
		time.Minute, 20*time.Millisecond)
	jrA = a.roundTrip(join(a, jrA.MemberID, 30000)).(*kmsg.JoinGroupResponse)
	resp, err := b.receive(join(b, "", 500), corr)
	require.NoError(t, err)
	jrB := resp.(*kmsg.JoinGroupResponse)
	require.Zero(t, jrB.ErrorCode)
	require.Len(t, jrA.Members, 2)
	syncAll(a, jrA)
	syncAll(b, jrB)

	// B goes silent: after its session the group rebalances without it.
	require.Eventually(t, func() bool {
		return heartbeatCode(a, "g", jrA.MemberID, jrA.Generation, nil) == kerr.RebalanceInProgress.Code
	},
		time.Minute, 20*time.Millisecond, "B's session never expired")
	jrA2 := a.roundTrip(join(a, jrA.MemberID, 30000)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jrA2.ErrorCode)
	require.Greater(t, jrA2.Generation, jrA.Generation)
	require.Len(t, jrA2.Members, 1)
	require.Equal(t, kerr.UnknownMemberID.Code, heartbeatCode(b, "g", jrB.MemberID, jrB.Generation, nil))
	syncAll(a, jrA2)

	// C joins and A never rejoins: when the rebalance timeout (2 s) ends,
	// A is removed and C alone makes the next generation.
	c := dialRaw(t, srv.KafkaAddr)
	jrC := c.roundTrip(join(c, "", 30000)).(*kmsg.JoinGroupResponse)
	require.Zero(t, jrC.ErrorCode)
	require.Len(t, jrC.Members, 1)
	require.Equal(t, jrC.MemberID, jrC.LeaderID)
	require.Equal(t, kerr.UnknownMemberID.Code, heartbeatCode(a, "g", jrA2.MemberID, jrA2.Generation, nil))
}

// TestEmptyGroupsExpireWithTheirOffsets sets a short offsets retention: an
// empty group's offsets are deleted once it passed since the last commit,
// also after a restart; a group with a member keeps them.
func TestEmptyGroupsExpireWithTheirOffsets(t *testing.T) {
	srv := startServer(t, append([]string{"-kafka.group-offsets-retention=1s"}, groupFlags...)...)
	createTopic(t, srv, "orders", 2)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	m := startMember(t, srv.KafkaAddr, "live", "orders", 2, nil)
	require.Eventually(t, func() bool { _, ok := settled([]*groupMember{m}, 2, 0); return ok }, time.Minute, 20*time.Millisecond)
	id, gen, _ := m.state()
	c := dialRaw(t, srv.KafkaAddr)
	require.Zero(t, commitCode(c, "live", id, gen, "orders", 0, ""))
	commit(t, adm, "idle", map[string]map[int32]int64{"orders": {0: 5}})
	require.Eventually(t, func() bool {
		listed, err := adm.ListGroups(context.Background())
		return err == nil && slices.Equal(listed.Groups(), []string{"live"})
	}, time.Minute, 50*time.Millisecond, "the idle group never expired")
	require.Empty(t, fetched(t, adm, "idle"))
	require.Equal(t, map[string]map[int32]int64{"orders": {0: 1}}, fetched(t, adm, "live"), "a group with members keeps its offsets")

	srv.Restart(t)
	adm = kadm.NewClient(newClient(t, srv.KafkaAddr))
	require.Empty(t, fetched(t, adm, "idle"), "the expiry is durable")
}

// TestOffsetDelete deletes committed offsets: those of a topic the
// group's members subscribe to are refused with GROUP_SUBSCRIBED_TO_TOPIC,
// the others go.
func TestOffsetDelete(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "orders", 1)
	createTopic(t, srv, "refunds", 1)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	m := startMember(t, srv.KafkaAddr, "g", "orders", 1, nil)
	require.Eventually(t, func() bool { _, ok := settled([]*groupMember{m}, 1, 0); return ok }, time.Minute, 20*time.Millisecond)
	id, gen, _ := m.state()
	c := dialRaw(t, srv.KafkaAddr)
	require.Zero(t, commitCode(c, "g", id, gen, "orders", 0, ""))
	require.Zero(t, commitCode(c, "g", id, gen, "refunds", 0, ""))

	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "g"
	for _, topic := range []string{"orders", "refunds"} {
		od.Topics = append(od.Topics, kmsg.OffsetDeleteRequestTopic{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}})
	}
	resp := c.roundTrip(od).(*kmsg.OffsetDeleteResponse)
	require.Zero(t, resp.ErrorCode)
	require.Equal(t, kerr.GroupSubscribedToTopic.Code, resp.Topics[0].Partitions[0].ErrorCode)
	require.Zero(t, resp.Topics[1].Partitions[0].ErrorCode)
	require.Equal(t, map[string]map[int32]int64{"orders": {0: 1}}, fetched(t, adm, "g"))
	od.Group = "nope"
	require.Equal(t, kerr.GroupIDNotFound.Code, c.roundTrip(od).(*kmsg.OffsetDeleteResponse).ErrorCode)
}
