package authz_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
)

// Every method of every public service has an action, or is marked as
// decided by its handler: a method missing from the table would be refused
// to everyone with authentication on.
func TestEveryPublicMethodHasAnAction(t *testing.T) {
	_ = dmsv1.File_dms_v1_queue_proto // the registry holds the public protos once imported
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("dms.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				full := "/" + string(svc.FullName()) + "/" + string(m.Name())
				n++
				if _, ok := authz.Methods[full]; !ok {
					t.Errorf("%s has no entry in authz.Methods", full)
				}
			}
		}
		return true
	})
	if n != len(authz.Methods) {
		t.Errorf("the public API has %d methods, authz.Methods %d entries", n, len(authz.Methods))
	}
}

// ResourceOf reads the project and queue of each request shape.
func TestResourceOf(t *testing.T) {
	for _, tc := range []struct {
		req  interface{ ProtoReflect() protoreflect.Message }
		want authz.Resource
	}{
		{&dmsv1.ListQueuesRequest{Parent: "projects/p"}, authz.Resource{Project: "p"}},
		{&dmsv1.GetQueueRequest{Name: "projects/p/queues/q"}, authz.Resource{Project: "p", Queue: "q"}},
		{&dmsv1.CreateConsumerGroupRequest{Parent: "projects/p/queues/q"}, authz.Resource{Project: "p", Queue: "q"}},
		{&dmsv1.DeleteConsumerGroupRequest{Name: "projects/p/queues/q/groups/g"}, authz.Resource{Project: "p", Queue: "q"}},
		{&dmsv1.SendMessagesRequest{Queue: "projects/p/queues/q"}, authz.Resource{Project: "p", Queue: "q"}},
		{&dmsv1.ReceiveMessagesRequest{Group: "projects/p/queues/q/groups/g"}, authz.Resource{Project: "p", Queue: "q"}},
		// The group is optional and comes first: left empty, the queue names it.
		{&dmsv1.GetMessageTraceRequest{Queue: "projects/p/queues/q", MessageId: "m"}, authz.Resource{Project: "p", Queue: "q"}},
		{&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: "projects/p/queues/q/groups/g"}}, authz.Resource{Project: "p", Queue: "q"}},
	} {
		got, ok := authz.ResourceOf(tc.req)
		if !ok || got != tc.want {
			t.Errorf("%T: %+v %v, want %+v", tc.req, got, ok, tc.want)
		}
	}
	for _, req := range []interface{ ProtoReflect() protoreflect.Message }{
		&dmsv1.GetQueueRequest{Name: "projects/p/queues/q/extra"},
		&dmsv1.SubscribeRequest{Credits: 3},
		&dmsv1.ListQueuesRequest{Parent: ""},
	} {
		if got, ok := authz.ResourceOf(req); ok {
			t.Errorf("%v read as %+v", req, got)
		}
	}
}
