package identity

import (
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// Session tokens: valid until their expiry, refused after it, and refused
// when changed or made with another cluster's key.
func TestSessionTokens(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	a := NewAuthenticator(NewCache(nil, nil), NewSealer(nil), []byte("cluster key"), time.Hour, func() time.Time { return clock })
	token, claims := a.IssueToken("u1", "p1")
	if claims.GetExpireTimeMs() != now.Add(time.Hour).UnixMilli() {
		t.Fatalf("expiry %d", claims.GetExpireTimeMs())
	}
	p, err := a.Bearer(token)
	if err != nil || p.Kind != authz.User || p.UserID != "u1" || p.ScopeProject != "p1" || p.Method != "token" {
		t.Fatalf("fresh token: %+v %v", p, err)
	}
	clock = now.Add(time.Hour - time.Millisecond)
	if _, err := a.Bearer(token); err != nil {
		t.Fatalf("token just before expiry: %v", err)
	}
	clock = now.Add(time.Hour)
	if _, err := a.Bearer(token); errs.Of(err) != errs.ErrCredentialExpired {
		t.Fatalf("expired token: %v", err)
	}
	clock = now
	other := NewAuthenticator(NewCache(nil, nil), NewSealer(nil), []byte("another cluster"), time.Hour, func() time.Time { return clock })
	if _, err := other.Bearer(token); errs.Of(err) != errs.ErrCredentialInvalid {
		t.Fatalf("token of another cluster: %v", err)
	}
	body, mac, _ := strings.Cut(strings.TrimPrefix(token, sessionTokenPrefix), ".")
	flipped := []byte(body)
	flipped[3] ^= 1
	for _, bad := range []string{sessionTokenPrefix + string(flipped) + "." + mac, token + "A", "dms1.", "dms1..", "Bearer x", ""} {
		if _, err := a.Bearer(bad); errs.Of(err) != errs.ErrCredentialInvalid {
			t.Errorf("token %q: %v", bad, err)
		}
	}
}

// Principal assertions pass a principal to the internal listener and
// cannot be made without the cluster's key.
func TestPrincipalAssertions(t *testing.T) {
	a := NewAuthenticator(NewCache(nil, nil), NewSealer(nil), []byte("cluster key"), time.Hour, time.Now)
	for _, p := range []authz.Principal{
		{Kind: authz.User, UserID: "u1", ScopeProject: "p1", Method: "access-key"},
		authz.AnonymousPrincipal,
	} {
		got, err := a.ParseAssertion(a.Assert(p))
		if err != nil || got != p {
			t.Errorf("%+v came back as %+v %v", p, got, err)
		}
	}
	refused, err := a.ParseAssertion(a.Assert(authz.Principal{Kind: authz.Refused, Refusal: errs.Wrapf(errs.ErrCredentialExpired, "late")}))
	if err != nil || refused.Kind != authz.Refused || errs.Of(refused.Refusal) != errs.ErrCredentialExpired || refused.Refusal.Error() != "late" {
		t.Errorf("refusal came back as %+v %v", refused, err)
	}
	other := NewAuthenticator(NewCache(nil, nil), NewSealer(nil), []byte("forger"), time.Hour, time.Now)
	if _, err := a.ParseAssertion(other.Assert(authz.Principal{Kind: authz.User, UserID: "admin"})); errs.Of(err) != errs.ErrCredentialInvalid {
		t.Errorf("forged assertion: %v", err)
	}
}
