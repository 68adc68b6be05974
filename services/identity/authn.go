package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/errs"
)

// Authenticator turns credentials into principals. Everything it reads is
// in memory (the cache and the cluster's token key) except a password,
// which costs one argon2id hash.
type Authenticator struct {
	cache    *Cache
	sealer   *Sealer
	tokenKey []byte
	tokenTTL time.Duration
	now      func() time.Time
	// logins bounds the password hashes computed at once (each takes
	// argonMemory of memory).
	logins chan struct{}
	// verified remembers the claims of session tokens whose MAC checked
	// out, so that a client's every call does not pay for base64, HMAC
	// and decoding again (4 µs to 0.2 µs); expiry is checked on each use.
	verifiedMu sync.RWMutex
	verified   map[string]*metadatav1.SessionTokenClaims
}

// maxVerified bounds the verified-token memory; it is emptied when full.
const maxVerified = 16384

// NewAuthenticator returns an authenticator over cache, with the cluster's
// token key (LoadTokenKey) and the life of the session tokens it issues.
func NewAuthenticator(cache *Cache, sealer *Sealer, tokenKey []byte, tokenTTL time.Duration, now func() time.Time) *Authenticator {
	return &Authenticator{cache: cache, sealer: sealer, tokenKey: tokenKey, tokenTTL: tokenTTL, now: now, logins: make(chan struct{}, 4),
		verified: map[string]*metadatav1.SessionTokenClaims{}}
}

// Cache returns the cache the authenticator reads.
func (a *Authenticator) Cache() *Cache { return a.cache }

// LoadTokenKey returns the cluster's token key, creating it once.
func LoadTokenKey(ctx context.Context, cli *clientv3.Client) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(TokenKeyKey), "=", 0)).
		Then(clientv3.OpPut(TokenKeyKey, string(key))).Else(clientv3.OpGet(TokenKeyKey)).Commit()
	if err != nil {
		return nil, fmt.Errorf("identity: token key: %w", err)
	}
	if !resp.Succeeded {
		key = resp.Responses[0].GetResponseRange().Kvs[0].Value
	}
	return key, nil
}

// UserRef names a user as Keystone's password method does: by id, or by
// name within a domain (account) named by id or name.
type UserRef struct {
	ID, Name, DomainID, DomainName string
}

// Password checks a user's password.
func (a *Authenticator) Password(ctx context.Context, ref UserRef, password string) (*metadatav1.UserRecord, error) {
	var u *metadatav1.UserRecord
	var ok bool
	switch {
	case ref.ID != "":
		u, ok = a.cache.user(ref.ID)
	case ref.Name != "":
		account := ref.DomainID
		if account == "" {
			acc, found := a.cache.accountByName(ref.DomainName)
			account = acc.GetId()
			ok = found
		}
		if account != "" {
			u, ok = a.cache.userByName(account, ref.Name)
		}
	}
	if len(password) > maxPasswordLen*4 {
		return nil, errs.Wrapf(errs.ErrCredentialInvalid, "the user name or password is wrong")
	}
	select {
	case a.logins <- struct{}{}:
		defer func() { <-a.logins }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !ok || u == nil {
		// Hash anyway, so that timing does not tell which users exist.
		verifyPassword(dummyHash, password)
		return nil, errs.Wrapf(errs.ErrCredentialInvalid, "the user name or password is wrong")
	}
	if !verifyPassword(u.GetPasswordHash(), password) {
		return nil, errs.Wrapf(errs.ErrCredentialInvalid, "the user name or password is wrong")
	}
	return u, nil
}

var dummyHash, _ = hashPassword("not a password of anyone")

// PasswordPrincipal authenticates a user by password, as a protocol's
// PLAIN mechanism does, and returns the principal (not scoped to a
// project: each request is decided against the project it names).
func (a *Authenticator) PasswordPrincipal(ctx context.Context, ref UserRef, password string) (authz.Principal, error) {
	u, err := a.Password(ctx, ref, password)
	if err != nil {
		return authz.Principal{}, err
	}
	return authz.Principal{Kind: authz.User, UserID: u.GetId(), Method: "password"}, nil
}

// sessionTokenPrefix starts every session token: `dms1.{claims}.{mac}`.
const sessionTokenPrefix = "dms1."

// IssueToken makes a session token for a user, scoped to a project when
// project is not empty.
func (a *Authenticator) IssueToken(userID, project string) (string, *metadatav1.SessionTokenClaims) {
	now := a.now()
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	claims := &metadatav1.SessionTokenClaims{UserId: userID, ProjectId: project, IssueTimeMs: now.UnixMilli(), ExpireTimeMs: now.Add(a.tokenTTL).UnixMilli(), Nonce: nonce}
	body, _ := proto.Marshal(claims)
	enc := base64.RawURLEncoding
	return sessionTokenPrefix + enc.EncodeToString(body) + "." + enc.EncodeToString(mac(a.tokenKey, "session-token", body)), claims
}

// Bearer authenticates a token (an X-Auth-Token or authorization: Bearer
// value): a session token or an API token.
func (a *Authenticator) Bearer(token string) (authz.Principal, error) {
	switch {
	case strings.HasPrefix(token, sessionTokenPrefix):
		claims, err := a.sessionClaims(token)
		if err != nil {
			return authz.Principal{}, err
		}
		return authz.Principal{Kind: authz.User, UserID: claims.GetUserId(), ScopeProject: claims.GetProjectId(), Method: "token"}, nil
	case strings.HasPrefix(token, apiTokenPrefixText):
		id, secret, _ := strings.Cut(strings.TrimPrefix(token, apiTokenPrefixText), ".")
		rec, ok := a.cache.apiToken(id)
		sum := sha256.Sum256([]byte(secret))
		if !ok || subtle.ConstantTimeCompare(sum[:], rec.GetSecretSha256()) != 1 {
			return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the API token is unknown or revoked")
		}
		if exp := rec.GetExpireTimeMs(); exp != 0 && a.now().UnixMilli() >= exp {
			return authz.Principal{}, errs.Wrapf(errs.ErrCredentialExpired, "the API token expired at %s", time.UnixMilli(exp).UTC().Format(time.RFC3339))
		}
		return authz.Principal{Kind: authz.User, UserID: rec.GetUserId(), ScopeProject: rec.GetProjectId(), Method: "api-token"}, nil
	}
	return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the token is not a DMS token")
}

// sessionClaims verifies a session token and returns what it says.
func (a *Authenticator) sessionClaims(token string) (*metadatav1.SessionTokenClaims, error) {
	a.verifiedMu.RLock()
	claims := a.verified[token]
	a.verifiedMu.RUnlock()
	if claims == nil {
		var err error
		if claims, err = a.verifySession(token); err != nil {
			return nil, err
		}
		a.verifiedMu.Lock()
		if len(a.verified) >= maxVerified {
			clear(a.verified)
		}
		a.verified[token] = claims
		a.verifiedMu.Unlock()
	}
	if a.now().UnixMilli() >= claims.GetExpireTimeMs() {
		return nil, errs.Wrapf(errs.ErrCredentialExpired, "the token expired at %s", time.UnixMilli(claims.GetExpireTimeMs()).UTC().Format(time.RFC3339))
	}
	return claims, nil
}

// verifySession checks a session token's MAC and decodes its claims.
func (a *Authenticator) verifySession(token string) (*metadatav1.SessionTokenClaims, error) {
	body64, mac64, ok := strings.Cut(strings.TrimPrefix(token, sessionTokenPrefix), ".")
	enc := base64.RawURLEncoding
	body, err1 := enc.DecodeString(body64)
	sum, err2 := enc.DecodeString(mac64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sum, mac(a.tokenKey, "session-token", body)) {
		return nil, errs.Wrapf(errs.ErrCredentialInvalid, "the token is malformed or was not issued by this cluster")
	}
	claims := &metadatav1.SessionTokenClaims{}
	if err := proto.Unmarshal(body, claims); err != nil {
		return nil, errs.Wrapf(errs.ErrCredentialInvalid, "the token is malformed")
	}
	return claims, nil
}

// Assertion kinds on the wire (PrincipalAssertion.kind).
const (
	assertAnonymous = 0
	assertUser      = 1
	assertRefused   = 2
)

// AssertionHeader is the gRPC metadata key of a principal assertion.
const AssertionHeader = "dms-principal"

// Assert encodes a principal for the internal listener, MACed so that
// only a process with the cluster's token key can make one.
func (a *Authenticator) Assert(p authz.Principal) string {
	rec := &metadatav1.PrincipalAssertion{UserId: p.UserID, ScopeProjectId: p.ScopeProject, Method: p.Method}
	switch p.Kind {
	case authz.User:
		rec.Kind = assertUser
	case authz.Refused:
		rec.Kind = assertRefused
		e := errs.Of(p.Refusal)
		rec.RefusalReason, rec.RefusalMessage = e.Reason, p.Refusal.Error()
	}
	body, _ := proto.Marshal(rec)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(body) + "." + enc.EncodeToString(mac(a.tokenKey, "principal", body))
}

// ParseAssertion decodes what Assert made.
func (a *Authenticator) ParseAssertion(v string) (authz.Principal, error) {
	body64, mac64, ok := strings.Cut(v, ".")
	enc := base64.RawURLEncoding
	body, err1 := enc.DecodeString(body64)
	sum, err2 := enc.DecodeString(mac64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sum, mac(a.tokenKey, "principal", body)) {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the principal assertion is forged or malformed")
	}
	rec := &metadatav1.PrincipalAssertion{}
	if err := proto.Unmarshal(body, rec); err != nil {
		return authz.Principal{}, errs.Wrapf(errs.ErrCredentialInvalid, "the principal assertion is malformed")
	}
	switch rec.GetKind() {
	case assertUser:
		return authz.Principal{Kind: authz.User, UserID: rec.GetUserId(), ScopeProject: rec.GetScopeProjectId(), Method: rec.GetMethod()}, nil
	case assertRefused:
		sentinel := errs.ErrCredentialInvalid
		for _, e := range []*errs.Error{errs.ErrCredentialExpired, errs.ErrUnauthenticated} {
			if e.Reason == rec.GetRefusalReason() {
				sentinel = e
			}
		}
		return authz.Principal{Kind: authz.Refused, Refusal: errs.Wrapf(sentinel, "%s", rec.GetRefusalMessage())}, nil
	}
	return authz.AnonymousPrincipal, nil
}
