package delivery

import (
	"errors"
	"testing"

	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// FuzzReceiptHandle decodes arbitrary text as a receipt handle. Whatever it
// is, decoding never panics and refuses with RECEIPT_HANDLE_INVALID; a
// handle that decodes is exactly the one the signer makes for that
// delivery, so no other text (a flipped bit, other padding bits, trailing
// bytes) settles it.
func FuzzReceiptHandle(f *testing.F) {
	s := newSigner(testReceiptKey)
	for _, h := range []string{
		s.encode(receiptPrefix(kindMessages, testQueueID, testGroupID, ""), 0, 0, 1),
		s.encode(receiptPrefix(kindMessages, testQueueID, testGroupID, ""), 2, 123456789, 3),
		s.encode(receiptPrefix(kindDeadLetters, testQueueID, testGroupID, ""), 0, 1<<40, 16),
		s.encode(receiptPrefix(kindBroadcast, testQueueID, testGroupID, "worker-1"), 7, 99, 1),
		s.encode(receiptPrefix(kindBroadcast, testQueueID, testGroupID, "w"), 1, 1, 1),
		"", "AA", "not a handle", "%%%%",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, handle string) {
		r, err := s.decode(handle)
		if err != nil {
			if !errors.Is(err, errs.ErrReceiptHandleInvalid) {
				t.Fatalf("decode(%q) = %v, want RECEIPT_HANDLE_INVALID", handle, err)
			}
			return
		}
		again := s.encode(receiptPrefix(r.kind, r.queue.String(), catalog.GroupIDPrefix+r.group.String(), r.consumerID), r.partition, r.offset, r.count)
		if again != handle {
			t.Fatalf("handle %q decodes to %+v, whose handle is %q: two texts settle one delivery", handle, r, again)
		}
	})
}

// A handle whose length leaves unused bits in its last base64 character
// must not settle the delivery with those bits set: one delivery, one text.
func TestReceiptHandleHasOneSpelling(t *testing.T) {
	s := newSigner(testReceiptKey)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, consumerID := range []string{"", "w", "wo", "wor"} {
		kind := kindBroadcast
		if consumerID == "" {
			kind = kindMessages
		}
		handle := s.encode(receiptPrefix(kind, testQueueID, testGroupID, consumerID), 1, 1, 1)
		last := indexByte(alphabet, handle[len(handle)-1])
		for delta := 1; delta < 4; delta++ {
			other := handle[:len(handle)-1] + string(alphabet[(last&^3)|((last+delta)&3)])
			if _, err := s.decode(other); err == nil {
				t.Errorf("%q decodes like %q", other, handle)
			}
		}
	}
}

func indexByte(s string, c byte) int {
	for i := range len(s) {
		if s[i] == c {
			return i
		}
	}
	return -1
}
