package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Password hashing: argon2id with the parameters of RFC 9106's second
// recommended option (64 MiB, 3 passes) lowered to 19 MiB and 2 passes as
// OWASP's cheat sheet allows, so that a login costs ~20 ms on one core
// instead of ~100 ms, and at most a few logins run at once (loginSlots).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password rules: long enough to resist guessing, short enough that a
// request cannot make the server hash megabytes.
const (
	minPasswordLen = 12
	maxPasswordLen = 128
)

func checkPassword(pw string) error {
	if n := len([]rune(pw)); n < minPasswordLen || n > maxPasswordLen {
		return errs.Wrapf(errs.ErrIdentityInvalid, "a password has %d to %d characters, this one %d", minPasswordLen, maxPasswordLen, n)
	}
	return nil
}

// hashPassword returns the PHC string of an argon2id hash of pw.
func hashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(sum)), nil
}

// verifyPassword checks pw against a PHC string made by hashPassword (with
// the parameters it names, so that they can change later).
func verifyPassword(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// newHexID returns 32 lowercase hex digits of randomness: the form of
// Keystone's ids and DMS project ids.
func newHexID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSecret returns n random bytes as unpadded URL-safe base64.
func newSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newAccessKeyID returns an AK in the form Huawei Cloud uses: 20 upper-case
// letters and digits.
func newAccessKeyID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Sealer keeps secret keys (which the server must read back to verify
// signatures) sealed with the storage master key: AES-256-GCM of the
// active key of -storage.encryption-key-file or DMS_STORAGE_KEYS, bound to
// the access key id. Without keys configured it stores them in the clear,
// and says so at startup.
type Sealer struct{ ring *partitionlog.Keyring }

// NewSealer returns a sealer over ring; nil keeps secrets in the clear.
func NewSealer(ring *partitionlog.Keyring) *Sealer { return &Sealer{ring: ring} }

// Enabled reports whether secrets are sealed.
func (s *Sealer) Enabled() bool { return s != nil && s.ring != nil }

func (s *Sealer) seal(ak, secret string) ([]byte, uint32, error) {
	if !s.Enabled() {
		return []byte(secret), 0, nil
	}
	id, aead := s.ring.Active()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, 0, err
	}
	return aead.Seal(nonce, nonce, []byte(secret), []byte("dms-sk:"+ak)), id, nil
}

func (s *Sealer) open(ak string, sealed []byte, keyID uint32) (string, error) {
	if keyID == 0 {
		return string(sealed), nil
	}
	if s == nil || s.ring == nil {
		return "", fmt.Errorf("identity: secret key of %s is sealed with storage key %d, but no storage keys are configured", ak, keyID)
	}
	aead, ok := s.ring.Lookup(keyID)
	if !ok || len(sealed) < aead.NonceSize() {
		return "", fmt.Errorf("identity: secret key of %s is sealed with storage key %d, which is not configured", ak, keyID)
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte("dms-sk:"+ak))
	if err != nil {
		return "", fmt.Errorf("identity: secret key of %s does not open with storage key %d: %w", ak, keyID, err)
	}
	return string(plain), nil
}

// mac is HMAC-SHA256 of msg under key, with a purpose label so that a MAC
// made for one use never verifies for another.
func mac(key []byte, purpose string, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(msg)
	return h.Sum(nil)
}

func itoa(n int) string { return strconv.Itoa(n) }
