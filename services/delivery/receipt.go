package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
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
	queueID    string
	groupID    string
	consumerID string // broadcast only
	partition  int32
	offset     int64
	count      int32
}

const (
	receiptVersion = 2
	macBytes       = 16
)

// signer makes and checks receipt handles with an HMAC key that every
// delivery process of the cluster shares through etcd, so a handle cannot be
// forged or replayed against another group. Keyed hashers are pooled: one
// is needed per message received and per ack.
type signer struct{ hashers *sync.Pool }

func newSigner(key []byte) signer {
	return signer{hashers: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

func (s signer) mac(payload []byte) []byte {
	m := s.hashers.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	sum := m.Sum(make([]byte, 0, sha256.Size))[:macBytes]
	s.hashers.Put(m)
	return sum
}

func (s signer) encode(r receipt) string {
	q, _ := uuid.Parse(r.queueID)
	g, _ := uuid.Parse(r.groupID[len(catalog.GroupIDPrefix):])
	buf := make([]byte, 0, 2+32+len(r.consumerID)+4*binary.MaxVarintLen64+macBytes)
	buf = append(buf, receiptVersion, byte(r.kind))
	buf = append(buf, q[:]...)
	buf = append(buf, g[:]...)
	buf = binary.AppendUvarint(buf, uint64(len(r.consumerID)))
	buf = append(buf, r.consumerID...)
	buf = binary.AppendUvarint(buf, uint64(r.partition))
	buf = binary.AppendUvarint(buf, uint64(r.offset))
	buf = binary.AppendUvarint(buf, uint64(r.count))
	buf = append(buf, s.mac(buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

func (s signer) decode(handle string) (receipt, error) {
	invalid := errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle is malformed or was not issued by this service")
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil || len(raw) < 2+32+4+macBytes || raw[0] != receiptVersion {
		return receipt{}, invalid
	}
	payload, sum := raw[:len(raw)-macBytes], raw[len(raw)-macBytes:]
	if !hmac.Equal(sum, s.mac(payload)) {
		return receipt{}, invalid
	}
	r := receipt{kind: consumptionKind(payload[1])}
	q, _ := uuid.FromBytes(payload[2:18])
	g, _ := uuid.FromBytes(payload[18:34])
	r.queueID, r.groupID = q.String(), catalog.GroupIDPrefix+g.String()
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
		return receipt{}, invalid
	}
	r.consumerID, rest = string(rest[:idLen]), rest[idLen:]
	var vals [3]uint64
	for i := range vals {
		if vals[i], ok = next(); !ok {
			return receipt{}, invalid
		}
	}
	r.partition, r.offset, r.count = int32(vals[0]), int64(vals[1]), int32(vals[2])
	return r, nil
}
