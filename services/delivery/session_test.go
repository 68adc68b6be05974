package delivery_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/testserver"
)

// engineFixture is a delivery engine of the test's own over a whole
// in-process server's storage and catalog, as a second delivery process of
// the cluster runs (it shares the receipt key), so that tests drive the
// engine's API directly. The server's own delivery engine is never asked
// about the groups a fixture serves.
type engineFixture struct {
	*testserver.Server
	clock  *testserver.Clock
	engine *delivery.Engine
	cache  *catalog.Cache
}

func startEngine(t *testing.T) *engineFixture {
	t.Helper()
	s, clock := start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdEndpoint}, DialTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithCancel(bg)
	t.Cleanup(cancel)
	logger := slog.New(slog.DiscardHandler)
	cache := catalog.NewCache(cli, logger)
	require.NoError(t, cache.Start(ctx))
	key, err := cli.Get(ctx, catalog.ReceiptKeyKey)
	require.NoError(t, err)
	require.Len(t, key.Kvs, 1, "the server made the receipt key")
	e := delivery.NewEngine(delivery.Config{}, storagev1.NewStorageServiceClient(s.Internal), cache, nil, key.Kvs[0].Value, clock.Now, logger)
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		require.NoError(t, e.Stop(stopCtx))
	})
	return &engineFixture{Server: s, clock: clock, engine: e, cache: cache}
}

// group creates a queue with one consumer group, sends bodies to it and
// returns the catalog records.
func (f *engineFixture) group(t *testing.T, queue *dmsv1.Queue, bodies ...string) (*metadatav1.QueueRecord, *metadatav1.GroupRecord) {
	t.Helper()
	q := f.CreateQueue(t, project, queue)
	g := f.CreateGroup(t, q, "g")
	if len(bodies) > 0 {
		f.Send(t, q, bodies...)
	}
	qr, gr, err := f.cache.ResolveGroupName(bg, g.GetName())
	require.NoError(t, err)
	return qr, gr
}

func (f *engineFixture) open(t *testing.T, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts delivery.SessionOptions) *delivery.Session {
	t.Helper()
	s, err := f.engine.OpenSession(bg, q, g, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(bg) })
	return s
}

// receive is a unary receive that does not wait.
func (f *engineFixture) receive(t *testing.T, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) []*dmsv1.ReceivedMessage {
	t.Helper()
	msgs, err := f.engine.Receive(bg, q, g, delivery.ReceiveOptions{MaxMessages: 100, Visibility: 30 * time.Second}, "", nil)
	require.NoError(t, err)
	return msgs
}

// next calls Next until it has n messages. The deadline only guards
// against a hang.
func next(t *testing.T, s *delivery.Session, n int) []*dmsv1.ReceivedMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	var out []*dmsv1.ReceivedMessage
	for len(out) < n {
		msgs, err := s.Next(ctx)
		require.NoError(t, err, "after %d of %d messages", len(out), n)
		out = append(out, msgs...)
	}
	require.Len(t, out, n)
	return out
}

// requireNothingNext checks that Next returns nothing before its context
// ends: a short one, since a wrong answer comes at once (the messages are
// in storage already) and a right one is the deadline.
func requireNothingNext(t *testing.T, s *delivery.Session, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	msgs, err := s.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, why)
	require.Empty(t, msgs, why)
}

func rangeOf(m *dmsv1.ReceivedMessage, status dmsv1.AckStatus) delivery.SettleRange {
	return delivery.SettleRange{Partition: m.GetPartition(), First: m.GetOffset(), Last: m.GetOffset(), Status: status}
}

func oneQueue(name string) *dmsv1.Queue { return &dmsv1.Queue{DisplayName: name, PartitionCount: 1} }

func TestSessionCreditsLimitWhatNextReturns(t *testing.T) {
	f := startEngine(t)
	q, g := f.group(t, oneQueue("credits"), "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9")
	s := f.open(t, q, g, delivery.SessionOptions{Credits: 3})

	first := next(t, s, 3)
	require.Equal(t, []string{"m0", "m1", "m2"}, testserver.Bodies(first))
	requireNothingNext(t, s, "no credit left")
	s.Grant(4)
	second := next(t, s, 4)
	require.Equal(t, []string{"m3", "m4", "m5", "m6"}, testserver.Bodies(second))

	_, ranges, err := s.Settle(bg, nil, []delivery.SettleRange{{First: first[0].GetOffset(), Last: second[3].GetOffset()}})
	require.NoError(t, err)
	require.True(t, ranges[0].GetApplied(), ranges[0].GetErrorMessage())
	requireNothingNext(t, s, "settling gives no credit back unless asked to")

	s.Grant(-1)
	s.Grant(1)
	requireNothingNext(t, s, "a negative grant takes credit back")
	s.Grant(100)
	require.Equal(t, []string{"m7", "m8", "m9"}, testserver.Bodies(next(t, s, 3)))

	q, g = f.group(t, oneQueue("batch"), "b0", "b1", "b2")
	batched := f.open(t, q, g, delivery.SessionOptions{Credits: 10, MaxBatch: 2})
	msgs, err := batched.Next(bg)
	require.NoError(t, err)
	require.Equal(t, []string{"b0", "b1"}, testserver.Bodies(msgs), "at most MaxBatch at a time")

	_, err = f.engine.OpenSession(bg, q, g, delivery.SessionOptions{Visibility: time.Second})
	require.ErrorContains(t, err, "visibility_timeout")
}

func TestSessionSettlesRangesWithEachStatus(t *testing.T) {
	f := startEngine(t)
	q, g := f.group(t, oneQueue("ranges"), "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7")
	// Visibility outlasts the retry delay, so that only the retries come back.
	s := f.open(t, q, g, delivery.SessionOptions{Credits: 8, Visibility: delivery.MaxVisibility})
	got := next(t, s, 8)

	handles, ranges, err := s.Settle(bg,
		[]delivery.AckRequest{{Handle: got[6].GetReceiptHandle()}, {Handle: "bogus"}},
		[]delivery.SettleRange{
			{First: got[0].GetOffset(), Last: got[1].GetOffset(), Status: dmsv1.AckStatus_ACK_STATUS_SUCCESS},
			{First: got[2].GetOffset(), Last: got[3].GetOffset(), Status: dmsv1.AckStatus_ACK_STATUS_FAIL},
			{First: got[4].GetOffset(), Last: got[5].GetOffset(), Status: dmsv1.AckStatus_ACK_STATUS_REDELIVER},
			{First: got[7].GetOffset(), Last: got[7].GetOffset() + 2},
			{First: 0, Last: 20000},
		})
	require.NoError(t, err)
	require.Len(t, handles, 2)
	require.True(t, handles[0].GetApplied(), handles[0].GetErrorMessage())
	require.Equal(t, "RECEIPT_HANDLE_INVALID", handles[1].GetErrorReason())
	require.Len(t, ranges, 5)
	for i := range 3 {
		require.Truef(t, ranges[i].GetApplied(), "range %d: %s", i, ranges[i].GetErrorMessage())
	}
	require.Equal(t, "RECEIPT_HANDLE_EXPIRED", ranges[3].GetErrorReason(), "two offsets of the range were never delivered")
	require.Equal(t, "BATCH_TOO_LARGE", ranges[4].GetErrorReason())

	s.Grant(10)
	failed := next(t, s, 2)
	require.Equal(t, []string{"m2", "m3"}, testserver.Bodies(failed), "failed: available again at once")
	require.EqualValues(t, 2, failed[0].GetDeliveryCount())
	f.clock.Advance(delivery.RetryDelay)
	retried := next(t, s, 2)
	require.Equal(t, []string{"m4", "m5"}, testserver.Bodies(retried), "redelivered after the retry delay")
	require.EqualValues(t, 2, retried[0].GetDeliveryCount())

	stats, _, err := f.engine.Stats(bg, q, g)
	require.NoError(t, err)
	require.EqualValues(t, 4, stats.GetConsumedMessages(), "m0, m1, m6 and m7, the refused long range none")
	require.EqualValues(t, 4, stats.GetInFlightMessages())
}

func TestSessionCreditOnSettleKeepsAWindowOfUnsettledDeliveries(t *testing.T) {
	f := startEngine(t)
	q, g := f.group(t, oneQueue("window"), "m0", "m1", "m2", "m3")
	s := f.open(t, q, g, delivery.SessionOptions{Credits: 2, CreditOnSettle: true, Visibility: 15 * time.Second})
	got := next(t, s, 2)
	requireNothingNext(t, s, "two unsettled deliveries fill the window")

	handles, _, err := s.Settle(bg, []delivery.AckRequest{{Handle: got[0].GetReceiptHandle()}}, nil)
	require.NoError(t, err)
	require.True(t, handles[0].GetApplied())
	m2 := next(t, s, 1)
	require.Equal(t, []string{"m2"}, testserver.Bodies(m2), "a settle by handle gave its credit back")

	_, ranges, err := s.Settle(bg, nil, []delivery.SettleRange{rangeOf(got[1], dmsv1.AckStatus_ACK_STATUS_FAIL)})
	require.NoError(t, err)
	require.True(t, ranges[0].GetApplied())
	again := next(t, s, 1)
	require.Equal(t, []string{"m1"}, testserver.Bodies(again), "a failed range gave its credit back, and m1 comes first")
	require.EqualValues(t, 2, again[0].GetDeliveryCount())

	_, ranges, err = s.Settle(bg, nil, []delivery.SettleRange{rangeOf(got[0], dmsv1.AckStatus_ACK_STATUS_SUCCESS)})
	require.NoError(t, err)
	require.Equal(t, "RECEIPT_HANDLE_EXPIRED", ranges[0].GetErrorReason(), "settled already")
	requireNothingNext(t, s, "a settle that did nothing gives nothing back")

	f.clock.Advance(15 * time.Second)
	_, ranges, err = s.Settle(bg, nil, []delivery.SettleRange{rangeOf(m2[0], dmsv1.AckStatus_ACK_STATUS_SUCCESS)})
	require.NoError(t, err)
	require.Equal(t, "RECEIPT_HANDLE_EXPIRED", ranges[0].GetErrorReason(), "m2's visibility passed")
	require.NotEmpty(t, next(t, s, 1), "a delivery found expired is settled for the window too")
}

// A failed message may be delivered again, with a higher count, while its
// fail is applied: the session must forget the delivery it settled, not the
// new one, or the new one's range ack is refused.
func TestSessionForgetsOnlyTheDeliveryItSettled(t *testing.T) {
	f := startEngine(t)
	q, g := f.group(t, oneQueue("race"), "m")
	s := f.open(t, q, g, delivery.SessionOptions{Credits: 10})
	first := next(t, s, 1)

	var again []*dmsv1.ReceivedMessage
	delivery.SetAfterSettleApplied(s, func() { again = next(t, s, 1) })
	_, ranges, err := s.Settle(bg, nil, []delivery.SettleRange{rangeOf(first[0], dmsv1.AckStatus_ACK_STATUS_FAIL)})
	require.NoError(t, err)
	require.True(t, ranges[0].GetApplied())
	require.Len(t, again, 1)
	require.EqualValues(t, 2, again[0].GetDeliveryCount(), "delivered again while the fail was being applied")
	delivery.SetAfterSettleApplied(s, nil)

	_, ranges, err = s.Settle(bg, nil, []delivery.SettleRange{rangeOf(again[0], dmsv1.AckStatus_ACK_STATUS_SUCCESS)})
	require.NoError(t, err)
	require.True(t, ranges[0].GetApplied(), "the second delivery is still the session's: %s", ranges[0].GetErrorMessage())
	stats, _, err := f.engine.Stats(bg, q, g)
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.GetConsumedMessages())
}

func TestSessionClose(t *testing.T) {
	f := startEngine(t)

	t.Run("unsettled deliveries stay in flight by default", func(t *testing.T) {
		q, g := f.group(t, oneQueue("keep"), "m0", "m1")
		s := f.open(t, q, g, delivery.SessionOptions{Credits: 2})
		got := next(t, s, 2)
		require.NoError(t, s.Close(bg))
		_, err := s.Next(bg)
		require.ErrorIs(t, err, delivery.ErrSessionClosed)
		_, _, err = s.Settle(bg, nil, []delivery.SettleRange{rangeOf(got[0], dmsv1.AckStatus_ACK_STATUS_SUCCESS)})
		require.ErrorIs(t, err, delivery.ErrSessionClosed)

		require.Empty(t, f.receive(t, q, g), "in flight until the visibility timeout")
		acked, err := f.engine.Ack(bg, q, g, []delivery.AckRequest{{Handle: got[0].GetReceiptHandle()}}, false)
		require.NoError(t, err)
		require.True(t, acked[0].GetApplied(), "the handles stay good")
		f.clock.Advance(delivery.DefaultVisibility)
		back := f.receive(t, q, g)
		require.Equal(t, []string{"m1"}, testserver.Bodies(back))
		require.EqualValues(t, 2, back[0].GetDeliveryCount())
	})

	t.Run("ExpireUnsettled returns them at once, counted", func(t *testing.T) {
		q, g := f.group(t, &dmsv1.Queue{DisplayName: "expire", PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 2}, "m0", "m1", "m2")
		opts := delivery.SessionOptions{Credits: 10, OnClose: delivery.ExpireUnsettled}
		s := f.open(t, q, g, opts)
		got := next(t, s, 3)
		handles, _, err := s.Settle(bg, []delivery.AckRequest{{Handle: got[0].GetReceiptHandle()}}, nil)
		require.NoError(t, err)
		require.True(t, handles[0].GetApplied())
		require.NoError(t, s.Close(bg))
		require.NoError(t, s.Close(bg), "a second Close does nothing")

		second := f.open(t, q, g, opts)
		back := next(t, second, 2)
		require.Equal(t, []string{"m1", "m2"}, testserver.Bodies(back), "back at once; the settled m0 is not")
		require.EqualValues(t, 2, back[0].GetDeliveryCount())
		require.NoError(t, second.Close(bg))
		dead, err := f.engine.ReceiveDeadLetters(bg, q, g, delivery.ReceiveOptions{MaxMessages: 10, Visibility: 30 * time.Second})
		require.NoError(t, err)
		require.Equal(t, []string{"m1", "m2"}, testserver.Bodies(dead), "the second expiry reached max_consume_count")
		require.Equal(t, "VISIBILITY_TIMEOUT", dead[0].GetDeadLetter().GetLastFailureReason())
	})

	t.Run("Close ends a waiting Next", func(t *testing.T) {
		for _, credits := range []int{0, 10} { // waiting for credit, waiting for messages
			q, g := f.group(t, oneQueue("wait"+itoa(credits)))
			s := f.open(t, q, g, delivery.SessionOptions{Credits: credits})
			ended := make(chan error, 1)
			go func() { _, err := s.Next(bg); ended <- err }()
			require.NoError(t, s.Close(bg))
			select {
			case err := <-ended:
				require.ErrorIs(t, err, delivery.ErrSessionClosed)
			case <-time.After(30 * time.Second):
				t.Fatalf("credits %d: Next did not return after Close", credits)
			}
		}
	})
}
