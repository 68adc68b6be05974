package identity

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// The vectors of huaweicloud-sdk-go-v3's own signer tests
// (core/auth/signer/signer_test.go, TestSigner_Sign and
// TestSigner_canonicalQueryString): AK "AccessKey", SK "SecretKey",
// endpoint https://example.huaweicloud.com, path /path.

func testAuthenticator(_ testing.TB, now time.Time, keys map[string]string) *Authenticator {
	c := NewCache(nil, slog.New(slog.DiscardHandler))
	c.mu.Lock()
	for ak, sk := range keys {
		rec := &metadatav1.AccessKeyRecord{AccessKey: ak, UserId: "u-" + ak, Secret: []byte(sk)}
		b, _ := proto.Marshal(rec)
		c.applyLocked(accessKeyKey(ak), b, false)
	}
	c.mu.Unlock()
	return NewAuthenticator(c, NewSealer(nil), []byte("token key"), time.Hour, func() time.Time { return now })
}

func TestSignatureVectorsOfTheHuaweiCloudGoSDK(t *testing.T) {
	sdkDate := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, method, query, body, contentType, signature string
	}{
		{"test1", "GET", "limit=1", "", "", "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"},
		// The SDK encodes a body with json.Encoder, which ends it with a newline.
		{"test2", "POST", "key=value", "{\"Name\":\"test\",\"Id\":1}\n", "application/json", "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "https://example.huaweicloud.com/path?"+tc.query, strings.NewReader(tc.body))
			req.Header.Set("X-Sdk-Date", "20060102T150405Z")
			req.Header.Set("TEST_UNDERSCORE", "TEST_VALUE")
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			req.Header.Set("Authorization", "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature="+tc.signature)
			a := testAuthenticator(t, sdkDate.Add(3*time.Minute), map[string]string{"AccessKey": "SecretKey"})
			p, err := a.SignedRequest(req, []byte(tc.body))
			if err != nil {
				t.Fatalf("the SDK's signature is refused: %v", err)
			}
			if p.Kind != authz.User || p.UserID != "u-AccessKey" || p.Method != "access-key" {
				t.Fatalf("principal %+v", p)
			}
			// One byte of the body, the path, the SK, or the clock changed:
			// refused, each with its reason.
			if _, err := a.SignedRequest(req, []byte(tc.body+" ")); !errsIs(err, errs.ErrCredentialInvalid) {
				t.Errorf("changed body: %v", err)
			}
			other := req.Clone(req.Context())
			other.URL.Path = "/path2"
			if _, err := a.SignedRequest(other, []byte(tc.body)); !errsIs(err, errs.ErrCredentialInvalid) {
				t.Errorf("changed path: %v", err)
			}
			wrongSK := testAuthenticator(t, sdkDate, map[string]string{"AccessKey": "SecretKey2"})
			if _, err := wrongSK.SignedRequest(req, []byte(tc.body)); !errsIs(err, errs.ErrCredentialInvalid) {
				t.Errorf("other SK: %v", err)
			}
			late := testAuthenticator(t, sdkDate.Add(ReplayWindow+time.Second), map[string]string{"AccessKey": "SecretKey"})
			if _, err := late.SignedRequest(req, []byte(tc.body)); !errsIs(err, errs.ErrCredentialExpired) {
				t.Errorf("outside the replay window: %v", err)
			}
			early := testAuthenticator(t, sdkDate.Add(-ReplayWindow-time.Second), map[string]string{"AccessKey": "SecretKey"})
			if _, err := early.SignedRequest(req, []byte(tc.body)); !errsIs(err, errs.ErrCredentialExpired) {
				t.Errorf("before the replay window: %v", err)
			}
			unknown := testAuthenticator(t, sdkDate, nil)
			if _, err := unknown.SignedRequest(req, []byte(tc.body)); !errsIs(err, errs.ErrCredentialInvalid) {
				t.Errorf("unknown AK: %v", err)
			}
		})
	}
}

func TestCanonicalQueryOfTheHuaweiCloudGoSDK(t *testing.T) {
	q := url.Values{"limit": {"1"}, "enable": {"true"}, "test": {"一 (&=?!#%.*)"}, "path": {"/tmp/123"}, "multi": {"3", "1", "2"}}
	want := "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
	if got := canonicalQuery(q, true); got != want {
		t.Fatalf("canonical query\n got %s\nwant %s", got, want)
	}
}

func TestSignatureMustCoverTheDate(t *testing.T) {
	req, _ := http.NewRequest("GET", "https://example.huaweicloud.com/path", nil)
	req.Header.Set("X-Sdk-Date", time.Now().UTC().Format(sdkDateFormat))
	req.Header.Set("Authorization", "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host, Signature="+strings.Repeat("0", 64))
	a := testAuthenticator(t, time.Now(), map[string]string{"AccessKey": "SecretKey"})
	if _, err := a.SignedRequest(req, nil); !errsIs(err, errs.ErrCredentialInvalid) || !strings.Contains(err.Error(), "X-Sdk-Date") {
		t.Fatalf("a signature without the date: %v", err)
	}
}

func errsIs(err error, sentinel *errs.Error) bool { return err != nil && errs.Of(err) == sentinel }
