package delivery

import (
	"encoding/base64"
	"testing"

	"github.com/opendms/dms/services/errs"
)

const (
	testQueueID = "2f1b6a4e-8c0d-4e5f-9a1b-2c3d4e5f6a7b"
	testGroupID = "g-7c6b5a49-3827-4165-8f4e-3d2c1b0a9f8e"
)

var testReceiptKey = []byte("0123456789abcdef0123456789abcdef")

func TestReceiptRoundTrip(t *testing.T) {
	s := newSigner(testReceiptKey)
	for _, tc := range []struct {
		kind       consumptionKind
		consumerID string
		partition  int32
		offset     int64
		count      int32
	}{
		{kindMessages, "", 0, 0, 1},
		{kindMessages, "", 2, 123456789, 3},
		{kindDeadLetters, "", 0, 1 << 40, 16},
		{kindBroadcast, "worker-1", 7, 99, 1},
	} {
		handle := s.encode(receiptPrefix(tc.kind, testQueueID, testGroupID, tc.consumerID), tc.partition, tc.offset, tc.count)
		r, err := s.decode(handle)
		if err != nil {
			t.Fatalf("decode(%s): %v", handle, err)
		}
		var owner receipt
		owner.setOwner(testQueueID, testGroupID)
		if r.kind != tc.kind || r.queue != owner.queue || r.group != owner.group || r.consumerID != tc.consumerID ||
			r.partition != tc.partition || r.offset != tc.offset || r.count != tc.count {
			t.Errorf("decode(encode(%+v)) = %+v", tc, r)
		}
	}
}

// TestReceiptHandlesOfEarlierReleasesStillDecode pins the handle format:
// handles in consumers' hands survive an upgrade of the delivery role. The
// handles were made by the release before the encoder was reworked.
func TestReceiptHandlesOfEarlierReleasesStillDecode(t *testing.T) {
	s := newSigner(testReceiptKey)
	for handle, want := range map[string]receipt{
		"AgEvG2pOjA1OX5obLD1OX2p7fGtaSTgnQWWPTj0sGwqfjgAClZrvOgOIwTfrfpmIHGiQoiyyo3C0":        {kind: kindMessages, partition: 2, offset: 123456789, count: 3},
		"AgMvG2pOjA1OX5obLD1OX2p7fGtaSTgnQWWPTj0sGwqfjgh3b3JrZXItMQAHAQNBQtCGpnezOMFYiBAeu8M": {kind: kindBroadcast, consumerID: "worker-1", offset: 7, count: 1},
	} {
		want.setOwner(testQueueID, testGroupID)
		got, err := s.decode(handle)
		if err != nil || got != want {
			t.Errorf("decode(%s) = %+v, %v; want %+v", handle, got, err, want)
		}
		if again := s.encode(receiptPrefix(want.kind, testQueueID, testGroupID, want.consumerID), want.partition, want.offset, want.count); again != handle {
			t.Errorf("encode(%+v) = %s, want %s", want, again, handle)
		}
	}
}

func TestReceiptRejectsForgeries(t *testing.T) {
	s := newSigner(testReceiptKey)
	handle := s.encode(receiptPrefix(kindMessages, testQueueID, testGroupID, ""), 1, 42, 1)
	raw, _ := base64.RawURLEncoding.DecodeString(handle)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-macBytes-1] ^= 1 // the count: a replay of another delivery
	long := make([]byte, 400)
	for name, h := range map[string]string{
		"empty":       "",
		"not base64":  "!!!" + handle[3:],
		"truncated":   handle[:len(handle)-4],
		"bit flipped": base64.RawURLEncoding.EncodeToString(flipped),
		"other key":   newSigner([]byte("another key of thirty-two bytes!")).encode(receiptPrefix(kindMessages, testQueueID, testGroupID, ""), 1, 42, 1),
		"too long":    base64.RawURLEncoding.EncodeToString(long),
	} {
		if _, err := s.decode(h); errs.Of(err).Reason != errs.Of(errs.ErrReceiptHandleInvalid).Reason {
			t.Errorf("%s: decode = %v, want RECEIPT_HANDLE_INVALID", name, err)
		}
	}
}

// BenchmarkReceipt measures a handle's making (once per delivered message)
// and checking (once per ack).
func BenchmarkReceipt(b *testing.B) {
	s := newSigner(testReceiptKey)
	prefix := receiptPrefix(kindMessages, testQueueID, testGroupID, "")
	handle := s.encode(prefix, 1, 1<<30, 1)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			_ = s.encode(prefix, 1, int64(i), 1)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := s.decode(handle); err != nil {
				b.Fatal(err)
			}
		}
	})
}
