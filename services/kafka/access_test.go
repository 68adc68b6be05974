package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAccessTable keeps the authorization table in step with the dispatch
// table: an API served without an entry would be refused to everyone.
func TestAccessTable(t *testing.T) {
	for key := range apis {
		_, ok := apiAccess[key]
		if !ok && !preAuthAPIs[key] {
			t.Errorf("%s (key %d) is served but has no entry in apiAccess", kmsg.NameForKey(key), key)
		}
	}
	for key := range apiAccess {
		if _, ok := apis[key]; !ok {
			t.Errorf("apiAccess names %s (key %d), which is not served", kmsg.NameForKey(key), key)
		}
	}
}

// TestFillErrors checks that a refusal mirrors the request's groups,
// topics and partitions with the error code in each.
func TestFillErrors(t *testing.T) {
	code := kerr.GroupAuthorizationFailed.Code
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version, dg.Groups = 5, []string{"a", "b"}
	dresp := fillErrors(dg, code, "no").(*kmsg.DescribeGroupsResponse)
	if dresp.Version != 5 || len(dresp.Groups) != 2 || dresp.Groups[1].Group != "b" || dresp.Groups[1].ErrorCode != code {
		t.Fatalf("DescribeGroups: %+v", dresp)
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version = 8
	of.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}}}
	oresp := fillErrors(of, code, "no").(*kmsg.OffsetFetchResponse)
	if len(oresp.Groups) != 1 || oresp.Groups[0].Group != "g" || oresp.Groups[0].ErrorCode != code || oresp.ErrorCode != code {
		t.Fatalf("OffsetFetch: %+v", oresp)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version = 4
	if r := fillErrors(hb, code, "no").(*kmsg.HeartbeatResponse); r.ErrorCode != code {
		t.Fatalf("Heartbeat: %+v", r)
	}
}
