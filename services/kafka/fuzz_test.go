package kafka_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// seedFrames are well-formed requests of every data and admin API, the
// starting points the fuzzer mutates (also kept in testdata/fuzz).
func seedFrames(t testing.TB) [][]byte {
	topic := "fz"
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	md := kmsg.NewPtrMetadataRequest()
	md.Version, md.AllowAutoTopicCreation = 12, true
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 6
	lo.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: topic, Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Timestamp: -2, CurrentLeaderEpoch: -1}}}}
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Version = 7
	ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "fz2", NumPartitions: 1, ReplicationFactor: -1}}
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dc.Version = 4
	dc.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: topic}}
	oe := kmsg.NewPtrOffsetForLeaderEpochRequest()
	oe.Version = 4
	oe.Topics = []kmsg.OffsetForLeaderEpochRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetForLeaderEpochRequestTopicPartition{{CurrentLeaderEpoch: -1}}}}
	fetch := fetchRequest(topic, 0, 0)
	fetch.Version = 16
	reqs := []kmsg.Request{
		&kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "fuzz", ClientSoftwareVersion: "1"},
		md,
		produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "a", "b")),
		fetchRequest(topic, 0, 0),
		fetch,
		lo,
		&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1},
		ct,
		dc,
		oe,
		&kmsg.DeleteTopicsRequest{Version: 5, TopicNames: []string{"fz2"}},
	}
	var out [][]byte
	for i, r := range reqs {
		out = append(out, f.AppendRequest(nil, r, int32(i+1)))
	}
	// Two pipelined requests in one input.
	out = append(out, append(append([]byte(nil), out[0]...), out[1]...))
	return out
}

// FuzzKafkaRequests writes arbitrary bytes to the Kafka listener of a real
// dmsd as one client's stream. Whatever they are, the server answers with
// responses that decode at the version asked, in request order, or closes
// the connection; it never crashes and keeps serving other connections.
func FuzzKafkaRequests(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	srv := startServer(f)
	probe := dialRaw(f, srv.KafkaAddr)
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := net.DialTimeout("tcp", srv.KafkaAddr, 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write(input)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		if err != nil {
			return // the server closed first: allowed
		}
		// The requests the input holds, as the server would see them.
		type sent struct {
			key, version int16
			corr         int32
		}
		var asked []sent
		for rest := input; len(rest) >= 12; {
			n := int(int32(binary.BigEndian.Uint32(rest)))
			if n < 8 || n > len(rest)-4 {
				break
			}
			asked = append(asked, sent{int16(binary.BigEndian.Uint16(rest[4:])), int16(binary.BigEndian.Uint16(rest[6:])), int32(binary.BigEndian.Uint32(rest[8:]))})
			rest = rest[4+n:]
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		next := 0
		for {
			var size [4]byte
			if _, err := io.ReadFull(conn, size[:]); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // a long poll the input asked for; the server is busy, not stuck
				}
				break // closed
			}
			body := make([]byte, binary.BigEndian.Uint32(size[:]))
			_, err := io.ReadFull(conn, body)
			require.NoError(t, err, "a response frame is whole")
			rd := kbin.Reader{Src: body}
			corr := rd.Int32()
			for next < len(asked) && asked[next].corr != corr {
				next++ // answered with no response (acks=0) or not at all
			}
			require.Less(t, next, len(asked), "response correlation id %d answers no request, in order", corr)
			a := asked[next]
			next++
			req := kmsg.RequestForKey(a.key)
			require.NotNil(t, req, "a response to unknown key %d", a.key)
			resp := req.ResponseKind()
			resp.SetVersion(a.version)
			if a.key == kmsg.ApiVersions.Int16() {
				// Answered at v0 when the version asked is unknown.
				if a.version > 4 || a.version < 0 {
					resp.SetVersion(0)
				}
			} else if resp.IsFlexible() {
				kmsg.SkipTags(&rd)
			}
			require.NoError(t, rd.Complete())
			require.NoError(t, resp.ReadFrom(rd.Src), "%s v%d response decodes", kmsg.NameForKey(a.key), a.version)
		}
		// The server still serves.
		probe.t = t
		av := probe.roundTrip(&kmsg.ApiVersionsRequest{Version: 0}).(*kmsg.ApiVersionsResponse)
		require.Zero(t, av.ErrorCode)
	})
}

// TestWriteFuzzSeeds rewrites the seed corpus files from seedFrames when
// DMS_WRITE_FUZZ_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("DMS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set DMS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzKafkaRequests")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzKafkaRequests")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, s := range seedFrames(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+strconv.Itoa(i)), []byte(body), 0o644))
	}
}
