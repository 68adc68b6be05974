package delivery_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
)

// Every refused ack says why, per handle, as the enum and as its name.
func TestAckRefusalsSayWhy(t *testing.T) {
	s, clock := start(t)
	q, other := s.CreateQueue(t, project, normal), s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "other"})
	g, sibling, otherGroup := s.CreateGroup(t, q, "g"), s.CreateGroup(t, q, "sibling"), s.CreateGroup(t, other, "g")
	s.Send(t, q, "m0", "m1", "m2")
	got := s.Receive(t, g, 10, 15*time.Second)
	require.Len(t, got, 3)

	// reused: settled once, then again.
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0])[0].GetApplied())
	raw, err := base64.RawURLEncoding.DecodeString(got[1].GetReceiptHandle())
	require.NoError(t, err)
	raw[len(raw)/2] ^= 0x01
	flipped := base64.RawURLEncoding.EncodeToString(raw)

	tests := []struct {
		name   string
		group  *dmsv1.ConsumerGroup
		handle string
		want   dmsv1.ErrorReason
	}{
		{"forged", g, "bm90IGEgaGFuZGxlIGF0IGFsbA", dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_INVALID},
		{"not base64", g, "%%%", dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_INVALID},
		{"empty", g, "", dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_INVALID},
		{"bit-flipped", g, flipped, dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_INVALID},
		{"reused", g, got[0].GetReceiptHandle(), dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_EXPIRED},
		{"another group of the queue", sibling, got[1].GetReceiptHandle(), dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_MISMATCH},
		{"a group of another queue", otherGroup, got[1].GetReceiptHandle(), dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_MISMATCH},
	}
	check := func(t *testing.T, group *dmsv1.ConsumerGroup, handle string, want dmsv1.ErrorReason) {
		t.Helper()
		resp, err := s.Consumer().AckMessages(t.Context(), &dmsv1.AckMessagesRequest{
			Group: group.GetName(), Acks: []*dmsv1.Ack{{ReceiptHandle: handle}},
		})
		require.NoError(t, err)
		r := resp.GetResults()[0]
		require.False(t, r.GetApplied())
		require.Equal(t, want, r.GetReason(), r.GetErrorMessage())
		require.Equal(t, want.String(), "ERROR_REASON_"+r.GetErrorReason())
		require.NotEmpty(t, r.GetErrorMessage())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.group, tt.handle, tt.want) })
	}
	t.Run("expired", func(t *testing.T) {
		clock.Advance(16 * time.Second)
		check(t, g, got[2].GetReceiptHandle(), dmsv1.ErrorReason_ERROR_REASON_RECEIPT_HANDLE_EXPIRED)
	})
	t.Run("applied acks have no reason", func(t *testing.T) {
		again := s.Receive(t, g, 10, 15*time.Second)
		require.NotEmpty(t, again)
		r := s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, again[0])[0]
		require.True(t, r.GetApplied())
		require.Equal(t, dmsv1.ErrorReason_ERROR_REASON_UNSPECIFIED, r.GetReason())
	})
}

// Enum values that no enum has, and negative counts, are refused with their
// reason instead of being read as a default.
func TestReceiveRefusesUnknownEnumValuesAndNegativeCounts(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"broadcast.start=42", func() error {
			_, err := s.Consumer().ReceiveMessages(t.Context(), &dmsv1.ReceiveMessagesRequest{
				Group: g.GetName(), ConsumerId: "c1", Broadcast: &dmsv1.BroadcastOptions{Start: 42},
			})
			return err
		}, "BROADCAST_START_INVALID"},
		{"tag_filter.match=77", func() error {
			_, err := s.Consumer().ReceiveMessages(t.Context(), &dmsv1.ReceiveMessagesRequest{
				Group: g.GetName(), TagFilter: &dmsv1.TagFilter{Tags: []string{"a"}, Match: 77},
			})
			return err
		}, "TAG_FILTER_INVALID"},
		{"max_messages=-1", func() error {
			_, err := s.Consumer().ReceiveMessages(t.Context(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: -1})
			return err
		}, "MAX_MESSAGES_INVALID"},
		{"redrive limit=-1", func() error {
			_, err := s.Consumer().RedriveDeadLetters(t.Context(), &dmsv1.RedriveDeadLettersRequest{Group: g.GetName(), Limit: -1})
			return err
		}, "REQUEST_INVALID"},
		{"redrive max_per_second=-5", func() error {
			_, err := s.Consumer().RedriveDeadLetters(t.Context(), &dmsv1.RedriveDeadLettersRequest{Group: g.GetName(), MaxPerSecond: -5})
			return err
		}, "REQUEST_INVALID"},
		{"page_size=-1", func() error {
			_, err := s.Queues().ListQueues(t.Context(), &dmsv1.ListQueuesRequest{Parent: "projects/" + project, PageSize: -1})
			return err
		}, "PAGE_SIZE_INVALID"},
		{"subscribe credits=-1", func() error {
			stream, err := s.Consumer().Subscribe(t.Context())
			require.NoError(t, err)
			require.NoError(t, stream.Send(&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: g.GetName(), Credits: -1}}))
			_, err = stream.Recv()
			return err
		}, "REQUEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.Equal(t, tt.want, rpcstatus.Reason(err), "%v", err)
		})
	}
}
