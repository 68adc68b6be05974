package partitionlog

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Encryption at rest; see doc.go for the format. The header of an encrypted
// batch stays in the clear so that recovery, the indexes, retention and time
// lookups work without decrypting, and CRC-32C still finds torn writes
// without keys.
const (
	offKeyID      = batchHeaderSize // uint32: keyring id of the key that sealed the batch
	offNonce      = offKeyID + 4    // 12 bytes
	nonceSize     = 12
	tagSize       = 16
	encHeaderSize = offNonce + nonceSize // bytes before the sealed records

	// encryptionOverhead is what sealing adds to a batch.
	encryptionOverhead = encHeaderSize - batchHeaderSize + tagSize

	// keySize: AES-256.
	keySize = 32
)

// Key is one AES-256 key of a Keyring.
type Key struct {
	ID     uint32
	Secret []byte // 32 bytes
}

type keyEntry struct {
	id   uint32
	aead cipher.AEAD
	fp   string
}

// Keyring holds the keys that seal and open record batches. The active key
// seals new batches; every key, active or not, opens the batches it sealed,
// so keys rotate by adding a new active key and keeping the old ones for as
// long as data sealed with them is retained. A Keyring is immutable and safe
// for concurrent use.
type Keyring struct {
	active *keyEntry
	keys   map[uint32]*keyEntry
	ids    []uint32 // in the order given
	// crcOnlyFrom, if not 0: a batch sealed with a missing key whose id is
	// at least this is checked by its CRC alone (see CRCOnlyFrom).
	crcOnlyFrom uint32
}

// CRCOnlyFrom returns a copy of k with which a batch sealed with a key that
// is not in the ring, of id id or above, counts as verified by its CRC
// alone instead of failing: for an offline check that has the master keys
// but not the data keys of the projects (whose ids are in such a range).
// A log must never be opened with it.
func (k *Keyring) CRCOnlyFrom(id uint32) *Keyring {
	c := *k
	c.crcOnlyFrom = id
	return &c
}

// ErrInvalidKeyring is wrapped by the errors of NewKeyring, ParseKeyring and
// ReadKeyringFile. Their messages never contain key material.
var ErrInvalidKeyring = errors.New("partitionlog: invalid keyring")

// NewKeyring returns a keyring holding keys; the last one is the active key.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKeyring)
	}
	k := &Keyring{keys: make(map[uint32]*keyEntry, len(keys))}
	for _, key := range keys {
		if _, dup := k.keys[key.ID]; dup {
			return nil, fmt.Errorf("%w: key id %d given twice", ErrInvalidKeyring, key.ID)
		}
		if len(key.Secret) != keySize {
			return nil, fmt.Errorf("%w: key id %d is %d bytes long, want %d (AES-256)", ErrInvalidKeyring, key.ID, len(key.Secret), keySize)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: key id %d: %v", ErrInvalidKeyring, key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key id %d: %v", ErrInvalidKeyring, key.ID, err)
		}
		e := &keyEntry{id: key.ID, aead: aead, fp: fingerprint(key.Secret)}
		k.keys[key.ID] = e
		k.ids = append(k.ids, key.ID)
		k.active = e
	}
	return k, nil
}

// fingerprint identifies a key without revealing it: a keyed hash of a fixed
// string, so that a stored fingerprint tells whether a key file still holds
// the key some data was sealed with.
func fingerprint(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("dms partitionlog key fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ParseKeyring parses keys written as `id:base64key` entries, one per line
// (commas, semicolons and spaces also separate entries, so a list fits in one
// environment variable). The id is a decimal uint32, the key 32 bytes in
// standard base64. Blank lines and lines starting with # are ignored. The last
// entry is the active key.
func ParseKeyring(text string) (*Keyring, error) {
	var keys []Key
	for n, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, entry := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\r' }) {
			idText, b64, ok := strings.Cut(entry, ":")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: an entry is not of the form id:base64key", ErrInvalidKeyring, n+1)
			}
			id, err := strconv.ParseUint(idText, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: key id %q is not a decimal number below 2^32", ErrInvalidKeyring, n+1, idText)
			}
			secret, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				secret, err = base64.RawStdEncoding.DecodeString(b64)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: key id %d is not valid base64", ErrInvalidKeyring, n+1, id)
			}
			keys = append(keys, Key{ID: uint32(id), Secret: secret})
		}
	}
	return NewKeyring(keys...)
}

// ReadKeyringFile parses the key file at path with ParseKeyring.
func ReadKeyringFile(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyring, err)
	}
	k, err := ParseKeyring(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (key file %s)", err, path)
	}
	return k, nil
}

// With returns a keyring holding k's keys and keys, the last of keys
// active; k is unchanged. A storage engine builds a log's ring from the
// node's master keys (which opened data sealed before per-project keys)
// and the project's data keys this way, without handling master secrets.
func (k *Keyring) With(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return k, nil
	}
	add, err := NewKeyring(keys...)
	if err != nil {
		return nil, err
	}
	out := &Keyring{active: add.active, keys: make(map[uint32]*keyEntry, len(k.keys)+len(add.keys)), crcOnlyFrom: k.crcOnlyFrom}
	for _, ring := range []*Keyring{k, add} {
		for _, id := range ring.ids {
			if _, dup := out.keys[id]; dup {
				return nil, fmt.Errorf("%w: key id %d given twice", ErrInvalidKeyring, id)
			}
			out.keys[id] = ring.keys[id]
			out.ids = append(out.ids, id)
		}
	}
	return out, nil
}

// SetKeys replaces the log's keyring: batches appended from now on are
// sealed with k's active key, and reads open batches with k's keys. Appends
// and reads already under way keep the ring they started with. Used to
// rotate keys without closing the log; k must hold every key that sealed
// data the log still has to read (nil is refused: a log cannot stop
// reading what it encrypted).
func (l *Log) SetKeys(k *Keyring) error {
	if k == nil {
		return fmt.Errorf("%w: SetKeys needs a keyring", ErrInvalidKeyring)
	}
	l.keys.Store(k)
	return nil
}

// Keys returns the log's keyring (nil: encryption off).
func (l *Log) Keys() *Keyring { return l.keys.Load() }

// Active returns the id and cipher of the key that seals new batches.
func (k *Keyring) Active() (id uint32, aead cipher.AEAD) { return k.active.id, k.active.aead }

// Lookup returns the cipher of key id.
func (k *Keyring) Lookup(id uint32) (cipher.AEAD, bool) {
	e, ok := k.keys[id]
	if !ok {
		return nil, false
	}
	return e.aead, true
}

// IDs returns the key ids in the order they were given (the active one last).
func (k *Keyring) IDs() []uint32 { return slices.Clone(k.ids) }

// Fingerprint returns a string that identifies key id without revealing it
// ("" if there is no such key).
func (k *Keyring) Fingerprint(id uint32) string {
	if e, ok := k.keys[id]; ok {
		return e.fp
	}
	return ""
}

// seedNonces picks the random nonce prefix and counter start of this Log.
func (l *Log) seedNonces() error {
	var seed [nonceSize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return fmt.Errorf("partitionlog: seeding nonces: %w", err)
	}
	copy(l.noncePrefix[:], seed[:4])
	l.nonceCtr.Store(binary.BigEndian.Uint64(seed[4:]))
	return nil
}

// nextNonce returns a nonce never used before by this Log. Across Logs and
// restarts sharing a key, a collision needs two random 96-bit starting points
// within the number of batches of each other.
func (l *Log) nextNonce() (n [nonceSize]byte) {
	copy(n[:4], l.noncePrefix[:])
	binary.BigEndian.PutUint64(n[4:], l.nonceCtr.Add(1))
	return n
}

// encodeEncryptedBatch encodes recs like encodeBatch, then seals the records
// with key k. len(dst) == encodedBatchSize(recs)+encryptionOverhead. The
// additional data is every header byte from magic to the nonce, so a header
// field changed on disk fails authentication even if its CRC was fixed up.
func encodeEncryptedBatch(dst []byte, recs []Record, k *keyEntry, nonce [nonceSize]byte) (maxTs int64) {
	maxTs = putBatch(dst, recs, encHeaderSize, flagEncrypted, tagSize)
	binary.BigEndian.PutUint32(dst[offKeyID:], k.id)
	copy(dst[offNonce:], nonce[:])
	plain := dst[encHeaderSize : len(dst)-tagSize]
	k.aead.Seal(plain[:0], nonce[:], plain, dst[offMagic:encHeaderSize])
	putCRC(dst)
	return maxTs
}

// openBatch authenticates and decrypts the records of an encrypted batch in
// place and returns them.
func openBatch(raw []byte, aead cipher.AEAD) ([]byte, error) {
	sealed := raw[encHeaderSize:]
	return aead.Open(sealed[:0], raw[offNonce:offNonce+nonceSize], sealed, raw[offMagic:encHeaderSize])
}

// ErrEncryptionKey is wrapped (together with ErrCorrupt) by errors about an
// encrypted batch whose key is not in the keyring, or that its key does not
// authenticate (a wrong key for that id, or tampered data).
var ErrEncryptionKey = errors.New("partitionlog: encryption key missing or wrong")

// keyError is a corrupt-data error caused by a missing or wrong key: it is
// both ErrCorrupt and ErrEncryptionKey.
type keyError struct{ error }

func (e keyError) Is(target error) bool { return target == ErrEncryptionKey }
func (e keyError) Unwrap() error        { return e.error }
