package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/google/uuid"

	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// receipt identifies one delivery of one message to one consumer group. Its
// delivery count doubles as a nonce: a handle of an earlier delivery of the
// same message no longer matches once the message was delivered again.
type receipt struct {
	queueID   string
	groupID   string
	partition int32
	offset    int64
	count     int32
}

const (
	receiptVersion = 1
	macBytes       = 16
)

// signer makes and checks receipt handles with an HMAC key that every
// delivery process of the cluster shares through etcd, so a handle cannot be
// forged or replayed against another group.
type signer struct{ key []byte }

func (s signer) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	return m.Sum(nil)[:macBytes]
}

func (s signer) encode(r receipt) string {
	q, _ := uuid.Parse(r.queueID)
	g, _ := uuid.Parse(r.groupID[len(catalog.GroupIDPrefix):])
	buf := make([]byte, 0, 1+32+3*binary.MaxVarintLen64+macBytes)
	buf = append(buf, receiptVersion)
	buf = append(buf, q[:]...)
	buf = append(buf, g[:]...)
	buf = binary.AppendUvarint(buf, uint64(r.partition))
	buf = binary.AppendUvarint(buf, uint64(r.offset))
	buf = binary.AppendUvarint(buf, uint64(r.count))
	buf = append(buf, s.mac(buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

func (s signer) decode(handle string) (receipt, error) {
	invalid := errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle is malformed or was not issued by this service")
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil || len(raw) < 1+32+3+macBytes || raw[0] != receiptVersion {
		return receipt{}, invalid
	}
	payload, sum := raw[:len(raw)-macBytes], raw[len(raw)-macBytes:]
	if !hmac.Equal(sum, s.mac(payload)) {
		return receipt{}, invalid
	}
	q, _ := uuid.FromBytes(payload[1:17])
	g, _ := uuid.FromBytes(payload[17:33])
	rest := payload[33:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return receipt{}, invalid
		}
		vals[i], rest = v, rest[n:]
	}
	return receipt{
		queueID:   q.String(),
		groupID:   catalog.GroupIDPrefix + g.String(),
		partition: int32(vals[0]),
		offset:    int64(vals[1]),
		count:     int32(vals[2]),
	}, nil
}
