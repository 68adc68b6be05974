// Package partitionlog implements the durable, append-only, checksummed log
// that stores every queue partition and every internal log of DMS.
//
// It is modelled on Kafka's log: a directory of segments, each a file of
// record batches with two sparse indexes. Records are opaque payloads with a
// caller-supplied timestamp; the layer above encodes messages into
// Record.Data. Offsets are consecutive int64s starting at 0.
//
// # Writing
//
// Append encodes its records into one batch (and seals it, if encryption is
// on) on the caller's goroutine and queues it. A single writer goroutine
// takes everything queued, assigns offsets, and writes it with one write(2)
// per segment touched. In DurabilitySync mode it hands what it wrote to a
// syncer goroutine, which issues one fdatasync for everything written since
// its previous one (group commit) and then publishes and completes those
// appends in offset order, while the writer already writes the next group
// (pipelined group commit). Because an fsync's cost is mostly fixed, the
// syncer briefly lingers before an fsync for the appends it expects back
// (those in flight when it last completed a group), never longer than half
// its last fsync took, so closed-loop appenders share one fsync instead of
// alternating between two half-size groups; meanwhile the writer holds back
// what is queued, so that it reaches the file in one write rather than many
// small ones while the disk idles. A record becomes visible to Read,
// NextOffset and WaitFor only once it is fsynced (sync mode) or written
// (async mode, where a background flusher fsyncs every FlushInterval). A
// failed write or fsync (for example ENOSPC) fails every append of the group
// (and, for an fsync, every group written after it) with a wrapped error and
// truncates the files back to the last good position before any of those
// appends returns, so stored data is never damaged and the log keeps working
// once the cause goes away.
//
// A segment is rolled when the next batch would take it past SegmentBytes:
// the old segment's log and indexes are fsynced, the new files are created
// and the directory is fsynced. Directory entries are also fsynced when
// retention deletes segments.
//
// # Directory layout
//
//	LOCK                              flock(2)ed while the log is open
//	00000000000000000000.log          segment: record batches
//	00000000000000000000.index        sparse offset index of the segment
//	00000000000000000000.timeindex    sparse time index of the segment
//	00000000000000001234.log          next segment, base offset 1234
//	...
//
// File names are the segment's base offset (its first offset), zero-padded to
// 20 digits. The last segment is the active one; only it is written.
//
// # Record batch format
//
// All fixed-width fields are big-endian.
//
//	offset  size  field
//	0       8     baseOffset    int64, offset of the first record
//	8       4     length        int32, bytes following this field
//	12      4     crc           uint32, CRC-32C (Castagnoli) of bytes 16..end
//	16      1     magic         format version, currently 1
//	17      2     flags         uint16; bit 0: encrypted; other bits must be 0
//	19      4     recordCount   int32, >= 1
//	23      8     firstTimestamp int64, unix ms of the first record
//	31      8     maxTimestamp  int64, largest record timestamp
//	39      ...   records
//
// Each record is
//
//	uvarint  data length
//	varint   timestamp - firstTimestamp (zig-zag)
//	bytes    data
//
// An encrypted batch (Options.Keys set) has the same header, in the clear, so
// that recovery, indexes, retention and time lookups need no key and the CRC
// (computed over the ciphertext) still finds torn writes without keys:
//
//	39      4     keyID         uint32, the Keyring id of the sealing key
//	43      12    nonce         4 random bytes per Log, then a counter from a random start
//	55      ...   records sealed with AES-256-GCM, followed by the 16-byte tag
//
// The additional authenticated data is bytes 16..55, so a header field
// changed on disk fails the tag even with its CRC fixed up. baseOffset and
// length are not authenticated: sealing happens on the appender's goroutine,
// before the writer assigns offsets, which keeps AES off the single writer.
// Reordering whole batches of equal record count by someone able to rewrite
// the files is therefore not detected; changing any byte of a batch is. A
// batch whose key id is not in the keyring, or whose tag fails, is reported
// as an error wrapping ErrCorrupt and ErrEncryptionKey that names the key
// id; nothing of it is returned. Open refuses a log that it cannot decrypt
// (no keys, a missing key id, or a wrong key, found on the first batch of
// every segment and of every key id in the last one) instead of treating the
// batches as a torn tail.
//
// Record i of a batch has offset baseOffset+i. The CRC does not cover
// baseOffset and length, so the writer can assign offsets without re-hashing;
// readers instead check that batches' base offsets are contiguous, and every
// batch read is checked against its CRC and for well-formed records before
// anything in it is returned.
//
// # Index formats
//
// Both indexes hold fixed-width, big-endian entries in increasing order. An
// entry is added before a batch once at least IndexIntervalBytes of batches
// have been written since the previous entry (the segment's first batch,
// at position 0, has no entry).
//
//	.index      relativeOffset uint32 | position uint32            (8 bytes)
//	.timeindex  timestamp int64 | relativeOffset uint32            (12 bytes)
//
// relativeOffset is offset-baseOffset of the segment. An offset entry points
// at the start of the batch with that base offset. A time entry (t, r) states
// that t is the largest timestamp of the segment's records with offsets below
// base+r, so a lookup for the first record with timestamp >= T starts at the
// last entry with t < T, which is correct even when timestamps are not
// monotonic. When a segment is rolled a final "seal" time entry (maxTimestamp,
// recordCount) is appended, giving the segment's maximum timestamp, which
// retention and OffsetForTime use without reading the segment.
//
// Lookups binary-search the index files with pread; nothing proportional to
// the number of records is kept in memory (per segment the log keeps only a
// few counters and three open files), and the page cache that pread goes
// through is not the process's resident memory.
//
// # Recovery
//
// Open scans only the last segment, batch by batch, verifying lengths, CRCs,
// record structure (of plaintext batches) and offset continuity, truncates it
// at the first torn or corrupt batch and rebuilds its indexes; recovery time is bounded by the size
// of the active segment, not of the log. Older segments were fsynced when
// rolled and are not scanned: their indexes get O(1) consistency checks (whole
// entries, a seal entry matching the next segment's base offset, a last offset
// entry that points at the right batch) and are rebuilt from the log only if
// missing or inconsistent. Index files without a log file are deleted. Damage
// found later while reading an older segment is reported as an error wrapping
// ErrCorrupt that names the file, the position and the offsets it makes
// unreadable; no unverified data is ever returned.
package partitionlog
