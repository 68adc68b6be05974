package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// consumptionKind tells what a consumption reads: the queue for a group, the
// group's dead letters, or the queue for one broadcast consumer.
type consumptionKind byte

const (
	kindMessages    consumptionKind = 1
	kindDeadLetters consumptionKind = 2
	kindBroadcast   consumptionKind = 3
)

// receipt identifies one delivery of one message to one consumption. Its
// delivery count doubles as a nonce: a handle of an earlier delivery of the
// same message no longer matches once the message was delivered again.
type receipt struct {
	kind       consumptionKind
	queue      uuid.UUID
	group      uuid.UUID // without catalog.GroupIDPrefix
	consumerID string    // broadcast only
	partition  int32
	offset     int64
	count      int32
}

// A handle is base64url (unpadded) of
//
//	version, kind, queue uuid (16), group uuid (16), uvarint len(consumerID),
//	consumerID, uvarint partition, uvarint offset, uvarint count, MAC (16)
//
// where MAC is HMAC-SHA256 of everything before it, truncated.
const (
	receiptVersion = 2
	macBytes       = 16
	// maxHandleBytes bounds a decoded handle: the fixed part, a consumer id
	// (at most 128 bytes, see validateConsumerID) and three varints.
	maxHandleBytes = 2 + 32 + binary.MaxVarintLen64 + 128 + 3*binary.MaxVarintLen64 + macBytes
)

// receiptPrefix is the part of a handle that every delivery of one
// consumption shares: computed once per consumption, not per message.
func receiptPrefix(kind consumptionKind, queueID, groupID, consumerID string) []byte {
	var owner receipt
	owner.setOwner(queueID, groupID) // ids come from the catalog, which made them
	buf := make([]byte, 0, 2+32+binary.MaxVarintLen64+len(consumerID))
	buf = append(buf, receiptVersion, byte(kind))
	buf = append(buf, owner.queue[:]...)
	buf = append(buf, owner.group[:]...)
	buf = binary.AppendUvarint(buf, uint64(len(consumerID)))
	return append(buf, consumerID...)
}

// signer makes and checks receipt handles with an HMAC key that every
// delivery process of the cluster shares through etcd, so a handle cannot be
// forged or replayed against another group. Keyed hashers are pooled: one
// is needed per message received and per ack.
type signer struct{ hashers *sync.Pool }

func newSigner(key []byte) signer {
	return signer{hashers: &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }}}
}

// macState is a pooled keyed hasher with scratch space for a handle and its
// sum, so that making or checking a MAC allocates nothing.
type macState struct {
	h   hash.Hash
	raw [maxHandleBytes]byte
	sum [sha256.Size]byte
}

// mac returns the MAC of payload, in m.sum.
func (m *macState) mac(payload []byte) []byte {
	m.h.Reset()
	m.h.Write(payload)
	return m.h.Sum(m.sum[:0])[:macBytes]
}

// encode makes the handle of one delivery of the consumption whose
// receiptPrefix is prefix.
func (s signer) encode(prefix []byte, partition int32, offset int64, count int32) string {
	m := s.hashers.Get().(*macState)
	defer s.hashers.Put(m)
	buf := append(m.raw[:0], prefix...)
	buf = binary.AppendUvarint(buf, uint64(partition))
	buf = binary.AppendUvarint(buf, uint64(offset))
	buf = binary.AppendUvarint(buf, uint64(count))
	buf = append(buf, m.mac(buf)...)
	var text [(maxHandleBytes*8 + 5) / 6]byte
	n := base64.RawURLEncoding.EncodedLen(len(buf))
	base64.RawURLEncoding.Encode(text[:n], buf)
	return string(text[:n])
}

// handleDecoding is strict: the unused bits of a handle's last character
// must be zero, or several texts would settle one delivery (a flipped bit
// among them). decode also refuses the line breaks it would skip.
var handleDecoding = base64.RawURLEncoding.Strict()

func (s signer) decode(handle string) (receipt, error) {
	invalid := func() (receipt, error) {
		return receipt{}, errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle is malformed or was not issued by this service")
	}
	m := s.hashers.Get().(*macState)
	defer s.hashers.Put(m)
	raw := m.raw[:]
	if base64.RawURLEncoding.DecodedLen(len(handle)) > len(raw) {
		return invalid()
	}
	n, err := handleDecoding.Decode(raw, []byte(handle))
	// The decoder skips \r and \n; a handle is only its own characters.
	if err != nil || handleDecoding.EncodedLen(n) != len(handle) || n < 2+32+4+macBytes || raw[0] != receiptVersion {
		return invalid()
	}
	payload, sum := raw[:n-macBytes], raw[n-macBytes:n]
	if !hmac.Equal(sum, m.mac(payload)) {
		return invalid()
	}
	r := receipt{kind: consumptionKind(payload[1])}
	copy(r.queue[:], payload[2:18])
	copy(r.group[:], payload[18:34])
	rest := payload[34:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	idLen, ok := next()
	if !ok || idLen > uint64(len(rest)) {
		return invalid()
	}
	if idLen > 0 {
		r.consumerID = string(rest[:idLen])
	}
	rest = rest[idLen:]
	var vals [3]uint64
	for i := range vals {
		if vals[i], ok = next(); !ok {
			return invalid()
		}
	}
	r.partition, r.offset, r.count = int32(vals[0]), int64(vals[1]), int32(vals[2])
	return r, nil
}

// setOwner sets the queue and group of r from their ids as the catalog
// writes them, and tells whether both are well formed.
func (r *receipt) setOwner(queueID, groupID string) bool {
	q, err1 := uuid.Parse(queueID)
	g, err2 := uuid.Parse(strings.TrimPrefix(groupID, catalog.GroupIDPrefix))
	r.queue, r.group = q, g
	return err1 == nil && err2 == nil
}
