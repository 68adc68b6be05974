// Package partitionlog implements the durable, append-only, checksummed log
// that stores every queue partition and every internal log of DMS.
//
// It is modelled on Kafka's log: a directory of segments, each a file of
// record batches with two sparse indexes. Records are opaque payloads with a
// caller-supplied timestamp; the layer above encodes messages into
// Record.Data. Offsets are consecutive int64s starting at 0 (or at the
// offset given to Reset).
//
// # Batches, formats and replication
//
// Append encodes records in this package's own format (FormatRecords). A
// batch may instead carry an opaque payload with another Format tag (for
// example a Kafka record batch, stored exactly as the producer sent it):
// AppendBatch stores it with a record count and timestamps, ReadBatches
// serves whole batches of any format, and Read, which decodes records,
// refuses opaque batches with ErrOpaqueBatch. A follower copies its leader
// with ReadBatches and AppendBatchAt, which lands a batch exactly at the
// leader's base offset or stores nothing (ErrOffsetMismatch). When it finds
// that its log diverged from the leader's (through the leader-epoch history,
// AssignEpoch and EndOffsetForEpoch, as in Kafka's KIP-101 and KIP-279), it
// cuts its log back with TruncateTo, or empties it at an offset with Reset.
// Options.OnPublish tells a storage engine whenever NextOffset changes.
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
//	leader-epochs                     leader-epoch history (if any was assigned)
//	truncation-intent                 only while a truncation or reset is unfinished
//
// File names are the segment's base offset (its first offset), zero-padded to
// 20 digits. The last segment is the active one; only it is written. The
// other files (and their name.tmp while they are replaced) are described
// under "Metadata files".
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
//	17      2     flags         uint16; bit 0: encrypted; bit 1: lost;
//	                            bits 8-15: format; bits 2-7 must be 0
//	19      4     recordCount   int32, >= 1
//	23      8     firstTimestamp int64, unix ms of the first record
//	31      8     maxTimestamp  int64, largest record timestamp
//	39      ...   payload
//
// The format (flags >> 8, the Format type) says what the payload is. Format
// 0 (FormatRecords; every batch written before formats existed has flags 0
// or 1, so it is a format 0 batch) is records, each
//
//	uvarint  data length
//	varint   timestamp - firstTimestamp (zig-zag)
//	bytes    data
//
// exactly recordCount of them filling the payload, the first with delta 0,
// the largest timestamp equal to maxTimestamp. Any other format is an opaque
// payload of any length whose meaning belongs to the caller (1 is used for
// Kafka record batches v2); it holds recordCount offsets, and its
// timestamps are stored as given (maxTimestamp need not be >= firstTimestamp)
// and stand for all its records: the time index, retention and OffsetForTime
// use maxTimestamp, and OffsetForTime answers with the batch's base offset.
// A reader treats a batch with flag bits outside bits 0, 1 and 8-15 as
// corrupt. A lost batch (flags exactly 2, see "Damage") holds a note instead
// of records. Versions of this package older than formats treat every opaque
// batch that way (their recovery would cut it off as a torn tail), so a log
// that holds opaque batches must not be opened by them.
//
// An encrypted batch (Options.Keys set) has the same header, in the clear, so
// that recovery, indexes, retention and time lookups need no key and the CRC
// (computed over the ciphertext) still finds torn writes without keys:
//
//	39      4     keyID         uint32, the Keyring id of the sealing key
//	43      12    nonce         4 random bytes per Log, then a counter from a random start
//	55      ...   payload sealed with AES-256-GCM, followed by the 16-byte tag
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
// SetKeys replaces a log's keyring while it is open (a key rotation).
// ReadSealedBatches and AppendSealedBatchAt copy encrypted batches between
// replicas byte for byte: the CRC and the authenticated data leave out the
// base offset and length, so a batch stays valid at the same offset in
// another copy of the log.
//
// Record i of a batch has offset baseOffset+i. The CRC does not cover
// baseOffset and length, so the writer can assign offsets without re-hashing;
// readers instead check that batches' base offsets are contiguous, and every
// batch read is checked against its CRC and for well-formed records before
// anything in it is returned (opaque payloads: only the CRC and, if
// encrypted, the tag).
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
// record structure (of plaintext FormatRecords batches) and offset
// continuity, repairs what it finds damaged (see "Damage") and rebuilds its
// indexes; recovery time is bounded by the size of the active segment, not
// of the log. Older segments were fsynced when rolled and are not scanned:
// their indexes get O(1) consistency checks (whole entries, a seal entry
// matching the next segment's base offset, a last offset entry that points
// at the right batch) and are rebuilt from the log only if missing or
// inconsistent. Index files without a log file are deleted. Damage found
// later in an older segment, by a reader or by Scrub, is repaired then. If
// the last segment ends before a batch its old offset index named (a file cut
// short), Open logs it as an error.
//
// Before any of that, Open finishes a truncation or reset that a crash (or
// an I/O error) interrupted, as its intent file says; see below.
//
// # Damage
//
// A damaged range is a run of bytes where the scan finds no valid batch
// (a failed CRC, a broken header, a base offset out of sequence) up to the
// next valid batch. To find that one, the scan looks, from at least a
// header's length on, for a position holding a whole batch whose CRC matches,
// whose base offset continues past the damage (above the expected one, by no
// more offsets than the damage has bytes) and which is followed by the end of
// the data or by a batch header continuing its offsets (the CRC does not
// cover the base offset).
//
//   - Damage followed by a valid batch: its bytes are first copied, durably,
//     to <base>-<position>.quarantine beside the segment (an existing copy is
//     kept: a repair interrupted by a crash may have overwritten part of the
//     range), then overwritten in place by a lost batch of exactly the same
//     size: base offset and record count are the offsets the range held,
//     flags 2, timestamps math.MinInt64 (so that it never counts for time),
//     and a payload noting the range, the quarantine file and the cause,
//     padded with zeros. The lost batch is an ordinary, checksummed batch:
//     every batch before and after it stays readable, and readers (Read,
//     ReadBatches) report its offsets with a LostRangeError, which callers
//     skip. The log and DamageStats count it.
//   - Damage running to the end of the last segment is a torn write (never
//     acknowledged: a batch is acknowledged only once written, and fsynced
//     in sync mode, after every batch before it): it is quarantined and cut
//     off. A damaged last batch of the last segment cannot be told from a
//     torn write, so it is treated as one.
//   - Damage running to the end of a sealed segment, and a sealed segment
//     that ends before its offsets do (cut short), get a lost batch for the
//     offsets up to the next segment's base.
//
// Readers that meet damage before it was repaired (a sealed segment, or the
// last one damaged while open) find the next valid batch the same way and
// report the same LostRangeError; a sealed segment is then repaired in the
// background (its indexes rewritten to new files and renamed over the old
// ones, so that readers of the old state keep consistent files), the last one
// at the next Open. A scan that starts at an index entry and fails on its
// first batch starts over from the segment's start, since the index may be
// what is damaged. Scrub verifies every sealed segment and its indexes at a
// bounded rate and repairs what it finds.
//
// Options.OnDamage hears of every range quarantined, Options.OnLost of every
// lost range a repair writes or a reader or Scrub meets, so that a replicated
// log can fetch the offsets again from another copy (cutting the damaged one
// back with TruncateTo). A follower whose leader lost a range that no copy
// has records it with AppendLostAt: a lost batch at the leader's offsets.

// # Truncation and reset
//
// TruncateTo and Reset are queued like appends and carried out by the
// writer once everything before them is published. Each first writes its
// intent file durably; from then on the operation is committed: the
// in-memory state switches to the new log (readers that were reading bytes
// about to be cut off notice a generation counter change and start over),
// then the files are cut or deleted and fsynced, the directory fsynced, the
// leader-epoch history updated, and the intent file removed (directory
// fsynced again, before any append). A crash before the intent is durable
// leaves the old log; after it, Open redoes every step (each is idempotent),
// giving the new log. An I/O error after the intent leaves the log in the
// new state in memory; the writer finishes the work before its next write.
//
// # Metadata files
//
// Both are text, replaced atomically (name.tmp written and fsynced, renamed
// over name, directory fsynced; a leftover name.tmp is deleted by Open), and
// end with a line "crc32c xxxxxxxx": the CRC-32C (Castagnoli), in 8
// lowercase hex digits, of every byte before that line. A file that fails
// its checksum or its syntax makes Open fail with an error wrapping
// ErrCorrupt that names it, rather than losing entries silently.
//
//	leader-epochs:
//	  dms partitionlog leader-epochs 1
//	  <n>                         number of entries
//	  <epoch> <startOffset>       n lines, increasing epochs, non-decreasing offsets
//	  crc32c <hex>
//
//	truncation-intent:
//	  dms partitionlog truncation-intent 1
//	  truncate <next> <segmentBase> <logBytes> <indexBytes> <timeindexBytes>
//	    or
//	  reset <offset>
//	  crc32c <hex>
//
// A truncation keeps the segment segmentBase, cut to the given file sizes
// (its log ends just before the batch with base offset next), and deletes
// every later segment. A reset deletes every segment but offset's and cuts
// that one (created if missing) to nothing. All numbers are decimal.
package partitionlog
