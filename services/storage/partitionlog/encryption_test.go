package partitionlog

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// testKey returns a deterministic 32-byte key.
func testKey(id uint32, seed byte) Key {
	secret := make([]byte, keySize)
	for i := range secret {
		secret[i] = seed + byte(i*7)
	}
	return Key{ID: id, Secret: secret}
}

func mustKeyring(t testing.TB, keys ...Key) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys...)
	require.NoError(t, err)
	return k
}

func keyLine(k Key) string {
	return fmt.Sprintf("%d:%s", k.ID, base64.StdEncoding.EncodeToString(k.Secret))
}

func TestParseKeyring(t *testing.T) {
	k1, k2, k3 := testKey(1, 1), testKey(2, 2), testKey(4000000000, 3)
	ok := []struct {
		name, text string
		active     uint32
		ids        []uint32
	}{
		{"one key", keyLine(k1), 1, []uint32{1}},
		{"file with comments, last is active", "# keys\n" + keyLine(k1) + "\n\n" + keyLine(k3) + "\n  " + keyLine(k2) + "  \n", 2, []uint32{1, 4000000000, 2}},
		{"one line, commas", keyLine(k2) + "," + keyLine(k1), 1, []uint32{2, 1}},
		{"semicolons and CRLF", keyLine(k1) + ";" + keyLine(k2) + "\r\n", 2, []uint32{1, 2}},
		{"unpadded base64", "7:" + base64.RawStdEncoding.EncodeToString(k1.Secret), 7, []uint32{7}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyring(tc.text)
			require.NoError(t, err)
			id, _ := k.Active()
			require.Equal(t, tc.active, id)
			require.Equal(t, tc.ids, k.IDs())
		})
	}
	secret := base64.StdEncoding.EncodeToString(k1.Secret)
	short := base64.StdEncoding.EncodeToString(k1.Secret[:16])
	bad := []struct{ name, text, want string }{
		{"empty", "  \n# nothing\n", "no keys"},
		{"no colon", secret, "not of the form id:base64key"},
		{"id not a number", "one:" + secret, `key id "one"`},
		{"id too large", "4294967296:" + secret, "below 2^32"},
		{"bad base64", "1:" + secret[:10] + "!" + secret[11:], "key id 1 is not valid base64"},
		{"AES-128 key", "1:" + short, "key id 1 is 16 bytes long, want 32"},
		{"duplicate id", keyLine(k1) + "\n" + keyLine(testKey(1, 9)), "key id 1 given twice"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyring(tc.text)
			require.ErrorIs(t, err, ErrInvalidKeyring)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), secret[:16], "errors must not leak key material")
		})
	}
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(p, []byte(keyLine(k1)+"\n"+keyLine(k2)+"\n"), 0o600))
		k, err := ReadKeyringFile(p)
		require.NoError(t, err)
		id, _ := k.Active()
		require.Equal(t, uint32(2), id)
		_, err = ReadKeyringFile(p + ".missing")
		require.ErrorIs(t, err, ErrInvalidKeyring)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("fingerprint", func(t *testing.T) {
		a, b := mustKeyring(t, k1, k2), mustKeyring(t, k1)
		require.Equal(t, a.Fingerprint(1), b.Fingerprint(1))
		require.NotEqual(t, a.Fingerprint(1), a.Fingerprint(2))
		require.Len(t, a.Fingerprint(1), 32)
		require.Empty(t, a.Fingerprint(3))
	})
}

// diskBatch is one batch as found in a segment file.
type diskBatch struct {
	path     string
	pos, end int64
	flags    uint16
	keyID    uint32
}

// diskBatches lists the batches of every segment of dir, reading headers
// only (so it works on encrypted logs without keys).
func diskBatches(t testing.TB, dir string) []diskBatch {
	t.Helper()
	var out []diskBatch
	for _, p := range segmentLogs(t, dir) {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		for pos := int64(0); pos < int64(len(data)); {
			b := data[pos:]
			end := pos + batchLogOverhead + int64(binary.BigEndian.Uint32(b[offLength:]))
			d := diskBatch{path: p, pos: pos, end: end, flags: binary.BigEndian.Uint16(b[offFlags:])}
			if d.flags&flagEncrypted != 0 {
				d.keyID = binary.BigEndian.Uint32(b[offKeyID:])
			}
			out = append(out, d)
			pos = end
		}
	}
	return out
}

// tamper flips a bit at offset off of a batch and fixes up its CRC, as an
// attacker (or a bug) that keeps the file consistent would.
func tamper(t testing.TB, b diskBatch, off int64) {
	t.Helper()
	data, err := os.ReadFile(b.path)
	require.NoError(t, err)
	data[b.pos+off] ^= 0x04
	binary.BigEndian.PutUint32(data[b.pos+offCRC:], crc32.Checksum(data[b.pos+offMagic:b.end], castagnoli))
	require.NoError(t, os.WriteFile(b.path, data, 0o644))
}

const secretMarker = "TOP-SECRET-PAYLOAD"

func TestEncryptionRoundTrip(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			keys := mustKeyring(t, testKey(1, 1))
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: 2048, IndexIntervalBytes: 100, Durability: d, Keys: keys, Logger: quietLogger()}
			l, err := Open(opts)
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(1, 1))
			var m model
			now := genSpec{batches: 80, maxRecs: 4, minSize: 0, maxSize: 120, tsJitterMs: 40}.generate(rng, &m, t, l, 1_700_000_000_000)
			off, err := l.Append(t.Context(), []Record{{Timestamp: now, Data: []byte(secretMarker)}})
			require.NoError(t, err)
			m.entries = append(m.entries, Entry{Offset: off, Timestamp: now, Data: []byte(secretMarker)})
			checkLog(t, l, &m, 0)
			require.NoError(t, l.Close())
			require.Greater(t, len(segmentLogs(t, dir)), 3)

			// Every batch is sealed with key 1, and no payload is on disk in
			// the clear.
			for _, b := range diskBatches(t, dir) {
				require.Equal(t, flagEncrypted, b.flags)
				require.Equal(t, uint32(1), b.keyID)
			}
			for _, p := range segmentLogs(t, dir) {
				data, err := os.ReadFile(p)
				require.NoError(t, err)
				require.False(t, bytes.Contains(data, []byte(secretMarker)), "plaintext in %s", p)
				require.False(t, bytes.Contains(data, []byte("rec-1|")), "plaintext in %s", p)
			}

			l, err = Open(opts)
			require.NoError(t, err)
			defer l.Close()
			checkLog(t, l, &m, 0)
		})
	}
}

func TestEncryptionBatchLimitCountsOverhead(t *testing.T) {
	l := openTest(t, Options{MaxBatchBytes: 1000, Keys: mustKeyring(t, testKey(1, 1))})
	recs := []Record{{Data: make([]byte, 1000)}}
	for encodedBatchSize(recs)+encryptionOverhead > 1001 {
		recs[0].Data = recs[0].Data[1:]
	}
	_, err := l.Append(t.Context(), recs)
	require.ErrorIs(t, err, ErrBatchTooLarge)
	recs[0].Data = recs[0].Data[1:]
	_, err = l.Append(t.Context(), recs)
	require.NoError(t, err)
}

// TestEncryptionRotation: batches keep the key they were sealed with; a new
// active key seals new batches and the old key keeps the old ones readable.
// Turning encryption on for a plaintext log works the same way.
func TestEncryptionRotation(t *testing.T) {
	k1, k2 := testKey(1, 1), testKey(2, 2)
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1500, IndexIntervalBytes: 100, Logger: quietLogger()}
	var m model
	phase := func(keys *Keyring, batches int) {
		o := opts
		o.Keys = keys
		l, err := Open(o)
		require.NoError(t, err)
		checkLog(t, l, &m, 0)
		for i := range batches {
			m.appendBatch(t, l, []int{30, 5}, []int64{int64(len(m.entries) + i), int64(len(m.entries) + i)})
		}
		checkLog(t, l, &m, 0)
		require.NoError(t, l.Close())
	}
	phase(nil, 20)                                  // plaintext
	phase(mustKeyring(t, k1), 20)                   // encryption turned on
	phase(mustKeyring(t, k1, k2), 20)               // rotated to key 2
	phase(mustKeyring(t, k2, testKey(3, 3), k1), 0) // key 1 retired as active, still held

	var flags []string
	for _, b := range diskBatches(t, dir) {
		flags = append(flags, fmt.Sprintf("%d/%d", b.flags, b.keyID))
	}
	want := append(append(slices20("0/0"), slices20("1/1")...), slices20("1/2")...)
	require.Equal(t, want, flags)

	// Dropping key 1 while data sealed with it remains fails at Open.
	o := opts
	o.Keys = mustKeyring(t, k2)
	_, err := Open(o)
	require.ErrorIs(t, err, ErrEncryptionKey)
	require.Contains(t, err.Error(), "key id 1, which is not in the keyring")
}

func slices20(s string) []string {
	out := make([]string, 20)
	for i := range out {
		out[i] = s
	}
	return out
}

// encryptedLayout says where buildEncryptedLog puts the encrypted batches.
type encryptedLayout int

const (
	severalSegments encryptedLayout = iota
	activeSegmentOnly
	sealedSegmentsOnly // followed by an empty active segment
)

func (e encryptedLayout) String() string {
	return [...]string{"several segments", "active segment only", "sealed segments only"}[e]
}

// buildEncryptedLog writes a log sealed with key and closes it.
func buildEncryptedLog(t *testing.T, key Key, layout encryptedLayout) (Options, *model) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1500, IndexIntervalBytes: 100, Keys: mustKeyring(t, key), Logger: quietLogger()}
	if layout == activeSegmentOnly {
		opts.SegmentBytes = 0
	}
	l, err := Open(opts)
	require.NoError(t, err)
	var m model
	for i := range 60 {
		m.appendBatch(t, l, []int{40, 10}, []int64{int64(2 * i), int64(2*i + 1)})
	}
	require.NoError(t, l.Close())
	switch layout {
	case sealedSegmentsOnly:
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(m.next(), logExt)), nil, 0o644))
		fallthrough
	case severalSegments:
		require.GreaterOrEqual(t, len(segmentLogs(t, dir)), 4)
	case activeSegmentOnly:
		require.Len(t, segmentLogs(t, dir), 1)
	}
	return opts, &m
}

// dirDigest is the content of every segment file, to show that a failed Open
// changed nothing.
func dirDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range segmentLogs(t, dir) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = string(b)
	}
	return out
}

// TestEncryptionWrongOrMissingKey: Open refuses a log whose data it cannot
// decrypt, with an error naming the key id, and leaves every byte in place
// (recovery must not mistake undecryptable batches for a torn tail).
func TestEncryptionWrongOrMissingKey(t *testing.T) {
	for _, layout := range []encryptedLayout{severalSegments, activeSegmentOnly, sealedSegmentsOnly} {
		t.Run(layout.String(), func(t *testing.T) {
			opts, m := buildEncryptedLog(t, testKey(1, 1), layout)
			digest := dirDigest(t, opts.Dir)
			for _, tc := range []struct {
				name string
				keys *Keyring
				want string
			}{
				{"no keys", nil, "encrypted with key id 1, but the log was opened without encryption keys"},
				{"key id missing", mustKeyring(t, testKey(2, 1)), "encrypted with key id 1, which is not in the keyring"},
				{"wrong key for the id", mustKeyring(t, testKey(1, 2)), "key id 1 does not authenticate the batch"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					o := opts
					o.Keys = tc.keys
					_, err := Open(o)
					require.ErrorIs(t, err, ErrEncryptionKey)
					require.ErrorIs(t, err, ErrCorrupt)
					require.Contains(t, err.Error(), tc.want)
					require.Equal(t, digest, dirDigest(t, opts.Dir), "a failed Open must not touch the data")
				})
			}
			l, err := Open(opts) // the right key
			require.NoError(t, err)
			defer l.Close()
			checkLog(t, l, m, 0)
		})
	}
}

// TestEncryptionTamper: changing a sealed batch on disk (and fixing its CRC)
// is caught by the authentication tag, whether the change is in the records
// or in a header field covered as additional data; the read fails naming the
// key id and the offsets, and nothing of the batch is returned.
func TestEncryptionTamper(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  func(b diskBatch) int64
	}{
		{"ciphertext", func(b diskBatch) int64 { return encHeaderSize + 3 }},
		{"tag", func(b diskBatch) int64 { return b.end - b.pos - 1 }},
		{"nonce", func(b diskBatch) int64 { return offNonce + 5 }},
		{"first timestamp", func(b diskBatch) int64 { return offFirstTs + 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, m := buildEncryptedLog(t, testKey(1, 1), severalSegments)
			var first []diskBatch // batches of the first segment
			for _, b := range diskBatches(t, opts.Dir) {
				if b.path == segmentLogs(t, opts.Dir)[0] {
					first = append(first, b)
				}
			}
			victim := len(first) / 2
			tamper(t, first[victim], tc.off(first[victim]))
			l, err := Open(opts) // the first batch authenticates: Open succeeds
			require.NoError(t, err)
			defer l.Close()

			damagedFrom := int64(2 * victim) // two records per batch
			var got []Entry
			from := int64(0)
			for {
				es, err := l.Read(from, 1<<20)
				if err != nil {
					require.ErrorIs(t, err, ErrCorrupt)
					require.ErrorIs(t, err, ErrEncryptionKey)
					require.Contains(t, err.Error(), "key id 1 does not authenticate the batch")
					require.Contains(t, err.Error(), fmt.Sprintf("offsets %d to ", damagedFrom))
					break
				}
				require.NotEmpty(t, es)
				got = append(got, es...)
				from = es[len(es)-1].Offset + 1
			}
			requireEntries(t, m.entries[:damagedFrom], got)
			_, err = l.OffsetForTime(m.entries[damagedFrom+1].Timestamp)
			require.ErrorIs(t, err, ErrEncryptionKey)
		})
	}
}

func TestEncryptionNonceUnique(t *testing.T) {
	l := openTest(t, Options{Keys: mustKeyring(t, testKey(1, 1))})
	seen := map[[nonceSize]byte]bool{}
	for range 1000 {
		n := l.nextNonce()
		require.False(t, seen[n])
		seen[n] = true
	}
	l2 := openTest(t, Options{Keys: mustKeyring(t, testKey(1, 1))})
	require.NotEqual(t, l.noncePrefix, l2.noncePrefix, "each Log draws its own nonce prefix")
}

// A follower copies sealed batches byte for byte: its segment files end up
// identical to the leader's, it reads the records once it holds the key
// (SetKeys, as after a rotation seen late), and a sealed batch damaged on
// the way is refused.
func TestSealedBatchCopy(t *testing.T) {
	k1, k2 := testKey(1, 1), testKey(2, 2)
	leaderDir := t.TempDir()
	leader := openTest(t, Options{Dir: leaderDir, SegmentBytes: 1024, Keys: mustKeyring(t, k1)})
	rng := rand.New(rand.NewPCG(2, 2))
	var m model
	genSpec{batches: 20, maxRecs: 3, maxSize: 80, tsJitterMs: 10}.generate(rng, &m, t, leader, 1_700_000_000_000)
	require.NoError(t, leader.SetKeys(mustKeyring(t, k1, k2))) // a rotation
	_, err := leader.AppendBatch(t.Context(), Batch{Format: 1, Count: 3, FirstTimestamp: 5, MaxTimestamp: 4, Payload: []byte("opaque " + secretMarker)})
	require.NoError(t, err)
	m.entries = append(m.entries, Entry{Offset: m.next()}, Entry{Offset: m.next() + 1}, Entry{Offset: m.next() + 2})

	followerDir := t.TempDir()
	follower := openTest(t, Options{Dir: followerDir, SegmentBytes: 1024, Keys: mustKeyring(t, k1)})
	for from := int64(0); from < leader.NextOffset(); {
		views, err := leader.ReadSealedBatches(from, 300)
		require.NoError(t, err)
		for _, v := range views {
			require.Nil(t, v.Payload)
			require.False(t, bytes.Contains(v.Sealed, []byte(secretMarker)))
			require.NoError(t, follower.AppendSealedBatchAt(t.Context(), v.BaseOffset, v.Sealed))
			from = v.BaseOffset + int64(v.Count)
		}
	}
	require.Equal(t, leader.NextOffset(), follower.NextOffset())

	// The last batch names key 2, which the follower lacks until told.
	_, err = follower.ReadBatches(m.next()-3, 1<<20)
	require.ErrorIs(t, err, ErrEncryptionKey)
	require.NoError(t, follower.SetKeys(mustKeyring(t, k1, k2)))
	views, err := follower.ReadBatches(m.next()-3, 1<<20)
	require.NoError(t, err)
	require.Equal(t, "opaque "+secretMarker, string(views[0].Payload))
	all, err := follower.ReadBatches(0, 1<<30)
	require.NoError(t, err)
	var got []Entry
	for _, v := range all[:len(all)-1] {
		require.NoError(t, ForEachRecord(v, func(off, ts int64, data []byte) bool {
			got = append(got, Entry{Offset: off, Timestamp: ts, Data: bytes.Clone(data)})
			return true
		}))
	}
	requireEntries(t, m.entries[:m.next()-3], got)

	require.NoError(t, leader.Close())
	require.NoError(t, follower.Close())
	leaderSegs, followerSegs := segmentLogs(t, leaderDir), segmentLogs(t, followerDir)
	require.Equal(t, len(leaderSegs), len(followerSegs))
	for i := range leaderSegs {
		a, err := os.ReadFile(leaderSegs[i])
		require.NoError(t, err)
		b, err := os.ReadFile(followerSegs[i])
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "segment %s differs from the leader's", filepath.Base(followerSegs[i]))
	}

	// Damaged on the way, or plaintext: refused, nothing stored.
	leader = openTest(t, Options{Dir: leaderDir, SegmentBytes: 1024, Keys: mustKeyring(t, k1, k2)})
	views, err = leader.ReadSealedBatches(0, 1)
	require.NoError(t, err)
	other := openTest(t, Options{Keys: mustKeyring(t, k1)})
	bad := bytes.Clone(views[0].Sealed)
	bad[len(bad)-1] ^= 1
	require.ErrorIs(t, other.AppendSealedBatchAt(t.Context(), 0, bad), ErrInvalidBatch)
	require.ErrorIs(t, other.AppendSealedBatchAt(t.Context(), 0, views[0].Sealed[:20]), ErrInvalidBatch)
	plain := openTest(t, Options{})
	require.ErrorIs(t, plain.AppendSealedBatchAt(t.Context(), 0, views[0].Sealed), ErrEncryptionKey)
	require.Equal(t, int64(0), other.NextOffset())
	require.ErrorIs(t, other.AppendSealedBatchAt(t.Context(), 5, views[0].Sealed), ErrOffsetMismatch)
}
