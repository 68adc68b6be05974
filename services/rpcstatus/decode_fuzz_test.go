package rpcstatus_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
)

// publicRequests lists the request type of every method of the public API.
func publicRequests() []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	for _, file := range []protoreflect.FileDescriptor{dmsv1.File_dms_v1_queue_proto, dmsv1.File_dms_v1_message_proto} {
		for i := range file.Services().Len() {
			methods := file.Services().Get(i).Methods()
			for j := range methods.Len() {
				out = append(out, methods.Get(j).Input())
			}
		}
	}
	return out
}

// FuzzRequestDecoding feeds arbitrary bytes, as a request of any public
// method, through the server's codec and unary interceptor: bytes that are
// a message reach the handler as exactly that message; bytes that are not
// never reach it and are answered InvalidArgument with REQUEST_INVALID.
func FuzzRequestDecoding(f *testing.F) {
	requests := publicRequests()
	seed := func(method int, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(method), b)
	}
	for i, desc := range requests {
		seed(i, dynamicpb.NewMessage(desc))
	}
	seed(0, &dmsv1.SendMessagesRequest{Queue: "projects/p/queues/q", Messages: []*dmsv1.Message{{Body: []byte("x"), Tags: []string{"t"}}}})
	f.Add(uint8(1), []byte{0x0a, 0x7f})
	f.Add(uint8(2), []byte{0x08, 0xff, 0xff})
	edge := rpcstatus.NewServerEdge()
	codec := edge.Codec()
	intercept := edge.UnaryServerInterceptor()
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		desc := requests[int(method)%len(requests)]
		mt, err := protoregistry.GlobalTypes.FindMessageByName(desc.FullName())
		if err != nil {
			t.Fatal(err)
		}
		want, got := mt.New().Interface(), mt.New().Interface()
		wantErr := proto.Unmarshal(data, want)
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, got); err != nil {
			t.Fatalf("the codec failed a request message instead of marking it: %v", err)
		}
		called := false
		_, err = intercept(context.Background(), got, &grpc.UnaryServerInfo{FullMethod: "/fuzz"}, func(_ context.Context, req any) (any, error) {
			called = true
			return nil, nil
		})
		if wantErr != nil {
			if called {
				t.Fatalf("an undecodable %s reached the handler (%v)", desc.FullName(), wantErr)
			}
			if status.Code(err) != codes.InvalidArgument || rpcstatus.Reason(err) != "REQUEST_INVALID" {
				t.Fatalf("undecodable %s: got %v, want InvalidArgument REQUEST_INVALID", desc.FullName(), err)
			}
			return
		}
		if err != nil || !called {
			t.Fatalf("a valid %s was refused: %v", desc.FullName(), err)
		}
		if !proto.Equal(want, got) {
			t.Fatalf("%s decoded differently by the server's codec", desc.FullName())
		}
	})
}
