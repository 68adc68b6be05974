package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

const metricsProject = "0123456789abcdef0123456789abcdef"

// scrape returns a node's /metrics text.
func scrape(t *testing.T, s *testserver.Server) string {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

// TestDomainMetricsMove produces, consumes, acks, fails and dead-letters
// messages on a real dmsd and reads each count back from /metrics, labelled
// by queue and group, then checks that -telemetry.queue-labels=false drops
// those labels.
func TestDomainMetricsMove(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, metricsProject, &dmsv1.Queue{DisplayName: "metered", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 2})
	g := s.CreateGroup(t, q, "billing")
	s.Send(t, q, "a", "b", "c")
	got := s.Receive(t, g, 3, 30*time.Second)
	require.Len(t, got, 3)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0])
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got[1])
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, got[2])

	queue := `messaging_destination_name="metered"`
	group := `messaging_consumer_group_name="billing"`
	require.EqualValues(t, 3, metricValue(t, s, "dms_messaging_produced_messages_total", queue))
	require.EqualValues(t, 3, metricValue(t, s, "dms_messaging_delivered_messages_total", group))
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_acked_messages_total", group))
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_failed_messages_total", `dms_failure_reason="FAILED_BY_CONSUMER"`))
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_failed_messages_total", `dms_failure_reason="REDELIVER_REQUESTED"`))
	require.EqualValues(t, 2, metricValue(t, s, "dms_messaging_backlog", group), "b failed, c waits for its retry")
	require.EqualValues(t, 2, metricValue(t, s, "dms_messaging_lag", group), "from b to the end")
	require.EqualValues(t, 0, metricValue(t, s, "dms_messaging_in_flight", group))
	require.EqualValues(t, 0, metricValue(t, s, "dms_messaging_dead_lettered_messages_total", group))

	again := s.Receive(t, g, 1, 30*time.Second)
	require.Len(t, again, 1)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, again...) // its second failure
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_dead_lettered_messages_total", group))
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_backlog", group), "only c is left")

	_, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("later"), Delay: durationpb.New(time.Hour)}}})
	require.NoError(t, err)
	require.EqualValues(t, 1, metricValue(t, s, "dms_messaging_scheduled", queue))

	text := scrape(t, s)
	if os.Getenv("DUMP_METRICS") != "" {
		_ = os.WriteFile(os.Getenv("DUMP_METRICS"), []byte(text), 0o644)
	}
	for _, series := range []string{
		`dms_storage_append_duration_seconds_count{kind="queue_partition"`,
		`dms_storage_fsync_duration_seconds_bucket{kind="queue_partition"`,
		`dms_storage_append_duration_seconds_count{kind="group_state"`,
		"dms_storage_filesystem_available_bytes{",
		"dms_storage_under_replicated_partitions{",
		"dms_messaging_oldest_unacked_age_seconds{",
	} {
		require.Contains(t, text, series)
	}
	require.Greater(t, metricValue(t, s, "dms_storage_filesystem_available_bytes", ""), float64(0))
	require.Greater(t, metricValue(t, s, "dms_messaging_oldest_unacked_age_seconds", group), float64(-1))

	t.Run("without queue labels", func(t *testing.T) {
		s := testserver.Start(t, testserver.WithFlags("-telemetry.queue-labels=false"))
		q := s.CreateQueue(t, metricsProject, &dmsv1.Queue{DisplayName: "unlabelled", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL})
		g := s.CreateGroup(t, q, "g")
		s.Send(t, q, "a", "b")
		require.Len(t, s.Receive(t, g, 2, 30*time.Second), 2)
		text := scrape(t, s)
		require.NotContains(t, text, "unlabelled")
		require.NotContains(t, text, "messaging_destination_name")
		require.EqualValues(t, 2, metricValue(t, s, "dms_messaging_produced_messages_total", `messaging_system="dms"`))
		require.EqualValues(t, 2, metricValue(t, s, "dms_messaging_delivered_messages_total", `messaging_system="dms"`))
		require.EqualValues(t, 2, metricValue(t, s, "dms_messaging_in_flight", `messaging_system="dms"`))
	})
}
