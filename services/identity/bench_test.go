package identity

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
)

// What authentication adds to one send, on the CPU: the per-call work of
// each credential kind, and the decision. (The end-to-end cost is
// BenchmarkSendAuth against BenchmarkSend in services/server.)

func benchDirectory(b *testing.B) (*Authenticator, string) {
	a := testAuthenticator(nil, time.Now(), map[string]string{"AKBENCH": "bench-secret"})
	put := func(key string, m proto.Message) {
		v, _ := proto.Marshal(m)
		a.cache.mu.Lock()
		a.cache.applyLocked(key, v, false)
		a.cache.mu.Unlock()
	}
	put(accountKey("acc"), &metadatav1.AccountRecord{Id: "acc", Name: "A"})
	put(projectKey("p"), &metadatav1.ProjectRecord{Id: "p", AccountId: "acc", Name: "p"})
	put(userKey("u-AKBENCH"), &metadatav1.UserRecord{Id: "u-AKBENCH", AccountId: "acc", Name: "u"})
	put(bindingKey("p", "u-AKBENCH"), &metadatav1.RoleBindingRecord{ProjectId: "p", UserId: "u-AKBENCH", Roles: []int32{int32(dmsv1.Role_ROLE_PRODUCER)}})
	token, _ := a.IssueToken("u-AKBENCH", "p")
	return a, token
}

func BenchmarkAuthSessionTokenAndDecide(b *testing.B) {
	a, token := benchDirectory(b)
	res := authz.Resource{Project: "p", Queue: "q"}
	for b.Loop() {
		p, err := a.Bearer(token)
		if err != nil {
			b.Fatal(err)
		}
		if d := authz.Decide(a.cache, p, authz.ProduceMessages, res); !d.Allowed {
			b.Fatal(d.Err)
		}
	}
}

// The REST path: the gateway authenticates and asserts, the role parses
// the assertion and decides.
func BenchmarkAuthRESTTokenAssertionAndDecide(b *testing.B) {
	a, token := benchDirectory(b)
	res := authz.Resource{Project: "p", Queue: "q"}
	req, _ := http.NewRequest("POST", "http://h/v1.0/p/queues/q/messages", nil)
	for b.Loop() {
		req.Header.Set("X-Auth-Token", token)
		p := a.FromHTTP(req)
		got, err := a.ParseAssertion(a.Assert(p))
		if err != nil {
			b.Fatal(err)
		}
		if d := authz.Decide(a.cache, got, authz.ProduceMessages, res); !d.Allowed {
			b.Fatal(d.Err)
		}
	}
}

func BenchmarkAuthSignedRequest(b *testing.B) {
	a, _ := benchDirectory(b)
	body := []byte(`{"messages":[{"body":"` + strings.Repeat("x", 1024) + `"}]}`)
	req, _ := http.NewRequest("POST", "http://h/v1.0/p/queues/q/messages", nil)
	req.Header.Set("Content-Type", "application/json")
	date := time.Now().UTC().Format(sdkDateFormat)
	req.Header.Set("X-Sdk-Date", date)
	signed := []string{"content-type", "host", "x-sdk-date"}
	sig := SignString("bench-secret", StringToSign(CanonicalRequest(req, signed, body, true), date), nil)
	req.Header.Set("Authorization", "SDK-HMAC-SHA256 Access=AKBENCH, SignedHeaders=content-type;host;x-sdk-date, Signature="+hexString(sig))
	for b.Loop() {
		if _, err := a.SignedRequest(req, body); err != nil {
			b.Fatal(err)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// A login's cost: one argon2id verification (19 MiB, 2 passes).
func BenchmarkPasswordVerify(b *testing.B) {
	hash, err := hashPassword("correct-horse-battery-staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !verifyPassword(hash, "correct-horse-battery-staple") {
			b.Fatal("refused")
		}
	}
}
