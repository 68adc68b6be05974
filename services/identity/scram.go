package identity

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"hash"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/authz"
)

// SCRAM credentials (RFC 5802, RFC 7677) for Kafka's SASL SCRAM. A SCRAM
// server checks a client's proof against StoredKey = H(HMAC(SaltedPassword,
// "Client Key")), with SaltedPassword = PBKDF2(password, salt, iterations):
// it cannot be derived from the argon2id hash, so the credentials are made
// from the password whenever it is set and stored with the user. They are
// what RFC 5802 has the server keep, and no more useful to a thief of the
// user records than the hash is (they do not let one log in without first
// seeing an exchange).

// The SCRAM mechanisms with stored credentials.
const (
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// scramIterations is the PBKDF2 count: RFC 7677's minimum and Kafka's
// default (4096). The client pays for it at each login; the server only
// when the password is set.
const scramIterations = 4096

// ScramHash returns the hash of a SCRAM mechanism, nil for another.
func ScramHash(mechanism string) func() hash.Hash {
	switch mechanism {
	case ScramSHA256:
		return sha256.New
	case ScramSHA512:
		return sha512.New
	}
	return nil
}

// scramCredentials makes the credentials of a password for every
// mechanism.
func scramCredentials(password string) ([]*metadatav1.ScramCredential, error) {
	var out []*metadatav1.ScramCredential
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		h := ScramHash(mech)
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		salted, err := pbkdf2.Key(h, password, salt, scramIterations, h().Size())
		if err != nil {
			return nil, err
		}
		clientKey := hmacSum(h, salted, "Client Key")
		stored := h()
		stored.Write(clientKey)
		out = append(out, &metadatav1.ScramCredential{Mechanism: mech, Salt: salt, Iterations: scramIterations,
			StoredKey: stored.Sum(nil), ServerKey: hmacSum(h, salted, "Server Key")})
	}
	return out, nil
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// ScramCredential returns a user's SCRAM credential for a mechanism and
// the principal the user logs in as (unscoped). For a user that does not
// exist, or has no credential for the mechanism (a password set before
// they existed), it returns a made-up credential that no proof matches and
// false, so that the exchange goes on and fails at its end like a wrong
// password: the first answer does not tell which users exist. The made-up
// salt is derived from the name with the cluster's key, so it is the same
// at every attempt, as a real one is.
func (a *Authenticator) ScramCredential(ref UserRef, mechanism string) (*metadatav1.ScramCredential, authz.Principal, bool) {
	var u *metadatav1.UserRecord
	ok := false
	switch {
	case ref.ID != "":
		u, ok = a.cache.user(ref.ID)
	case ref.Name != "" && ref.DomainID != "":
		u, ok = a.cache.userByName(ref.DomainID, ref.Name)
	}
	if ok {
		for _, c := range u.GetScramCredentials() {
			if c.GetMechanism() == mechanism {
				return c, authz.Principal{Kind: authz.User, UserID: u.GetId(), Method: "scram"}, true
			}
		}
	}
	h := ScramHash(mechanism)
	if h == nil {
		h = sha256.New
	}
	salt := mac(a.tokenKey, "scram-unknown-user", []byte(mechanism+"\x00"+ref.DomainID+"\x00"+ref.Name+"\x00"+ref.ID))[:16]
	return &metadatav1.ScramCredential{Mechanism: mechanism, Salt: salt, Iterations: scramIterations,
		StoredKey: make([]byte, h().Size()), ServerKey: make([]byte, h().Size())}, authz.Principal{}, false
}
