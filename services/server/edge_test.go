package server_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

// rawCodec sends the bytes it is given as they are, so that a test can send
// what no protobuf library would encode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// A request whose bytes are not a message of the method's type is the
// client's mistake: InvalidArgument with reason REQUEST_INVALID, not
// Internal, on unary calls and streams alike; and the server goes on serving.
func TestUndecodableRequestsAreInvalidArguments(t *testing.T) {
	s := testserver.Start(t)
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"truncated varint", []byte{0x08, 0xff}},
		{"length beyond the end", []byte{0x0a, 0x7f, 'a'}},
		{"group end without start", []byte{0x0c}},
		{"field number 0", []byte{0x00, 0x01}},
		{"invalid UTF-8 in a string field", []byte{0x0a, 0x02, 0xff, 0xfe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply []byte
			err := s.Conn.Invoke(t.Context(), "/dms.v1.QueueService/ListQueues", &tt.bytes, &reply, grpc.ForceCodecV2(rawCodec{}))
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.Equal(t, "REQUEST_INVALID", rpcstatus.Reason(err))
			require.Contains(t, status.Convert(err).Message(), "dms.v1.ListQueuesRequest")
		})
	}
	t.Run("first message of a stream", func(t *testing.T) {
		desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true}
		stream, err := s.Conn.NewStream(t.Context(), desc, "/dms.v1.ConsumerService/Subscribe", grpc.ForceCodecV2(rawCodec{}))
		require.NoError(t, err)
		bad := []byte{0x0a, 0x7f}
		require.NoError(t, stream.SendMsg(&bad))
		var reply []byte
		err = stream.RecvMsg(&reply)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Equal(t, "REQUEST_INVALID", rpcstatus.Reason(err))
	})
	_, err := s.Queues().ListQueues(t.Context(), &dmsv1.ListQueuesRequest{Parent: "projects/p1"})
	require.NoError(t, err, "well-formed requests are served as before")
}
