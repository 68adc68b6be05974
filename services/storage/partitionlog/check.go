package partitionlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// CheckReport is what Check found in one log directory.
type CheckReport struct {
	Dir      string
	Segments int
	Bytes    int64
	// Damage lists damaged ranges not repaired yet (Torn: the tail of the
	// last segment, expected after a crash; cut off by the next Open).
	Damage []Repair
	// Lost lists ranges an earlier repair marked lost (their bytes are in
	// quarantine files).
	Lost []Repair
	// Indexes lists index files whose entries do not match their segment
	// (rebuilt by the next Open or scrub).
	Indexes []string
	// Files lists damaged metadata files, with why.
	Files []string
}

// Problems counts what needs attention: damage other than a torn tail,
// wrong indexes and damaged metadata files.
func (r CheckReport) Problems() int {
	n := len(r.Indexes) + len(r.Files)
	for _, d := range r.Damage {
		if !d.Torn {
			n++
		}
	}
	return n
}

// Check verifies the log in dir without changing it: every batch of every
// segment (CRC, structure, offsets; encrypted batches authenticated when
// keys is given, by CRC alone otherwise), the indexes of sealed segments
// against their batches, and the metadata files' checksums. It refuses a
// log that is open (locked) elsewhere.
func Check(dir string, keys *Keyring) (CheckReport, error) {
	rep := CheckReport{Dir: dir}
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return rep, fmt.Errorf("partitionlog: opening lock file: %w", err)
	}
	defer lock.Close()
	if err := lockFile(lock); err != nil {
		return rep, fmt.Errorf("partitionlog: %s is in use (is dmsd running?): %w", dir, err)
	}
	for _, name := range []string{epochFileName, intentFileName} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("partitionlog: reading %s: %w", name, err)
		}
		if _, err := parseChecksummed(data, name); err != nil {
			rep.Files = append(rep.Files, err.Error())
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return rep, fmt.Errorf("partitionlog: listing %s: %w", dir, err)
	}
	var bases []int64
	for _, e := range ents {
		if base, ext, ok := parseSegmentFileName(e.Name()); ok && ext == logExt {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	kc := keyCheck{keys: keys, verified: map[uint32]bool{}, crcOnly: keys == nil}
	for i, base := range bases {
		sealNext := int64(-1)
		if i+1 < len(bases) {
			sealNext = bases[i+1]
		}
		if err := checkSegment(dir, base, sealNext, kc, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func checkSegment(dir string, base, sealNext int64, kc keyCheck, rep *CheckReport) error {
	path := filepath.Join(dir, segmentFileName(base, logExt))
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("partitionlog: opening %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("partitionlog: %s: %w", path, err)
	}
	rep.Segments++
	rep.Bytes += fi.Size()
	found, _, err := damageScan(dir, f, nil, path, base, fi.Size(), sealNext, kc, false)
	if err != nil {
		return err
	}
	for _, r := range found {
		if r.Recorded {
			rep.Lost = append(rep.Lost, r)
		} else {
			rep.Damage = append(rep.Damage, r)
		}
	}
	if sealNext < 0 || len(unrecorded(found)) > 0 {
		return nil // the last segment's indexes are rebuilt by every Open; a damaged segment's by its repair
	}
	idx, err1 := os.Open(filepath.Join(dir, segmentFileName(base, indexExt)))
	tidx, err2 := os.Open(filepath.Join(dir, segmentFileName(base, timeIndexExt)))
	defer func() {
		for _, x := range []*os.File{idx, tidx} {
			if x != nil {
				x.Close()
			}
		}
	}()
	if err1 != nil || err2 != nil {
		rep.Indexes = append(rep.Indexes, segmentFileName(base, indexExt)+" (missing)")
		return nil
	}
	idxData, err1 := io.ReadAll(idx)
	tidxData, err2 := io.ReadAll(tidx)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("partitionlog: reading the indexes of %s: %w", path, err)
	}
	ok, err := indexesConsistent(f, path, base, fi.Size(), sealNext, kc, idxData, tidxData)
	if err != nil {
		return err
	}
	if !ok {
		rep.Indexes = append(rep.Indexes, segmentFileName(base, indexExt))
	}
	return nil
}

// indexesConsistent reports whether a sealed segment's indexes say only what
// is true of its batches, whatever index interval wrote them: each offset
// entry names a batch start with its base offset, each time entry the
// largest timestamp before a batch start, in increasing order, ending with
// the seal entry.
func indexesConsistent(r io.ReaderAt, path string, base, size, sealNext int64, kc keyCheck, idxData, tidxData []byte) (bool, error) {
	if len(idxData)%idxEntrySize != 0 || len(tidxData)%tidxEntrySize != 0 || len(tidxData) == 0 {
		return false, nil
	}
	starts := map[int64]int64{}    // position -> base offset
	maxBefore := map[int64]int64{} // relative offset of a batch start -> max timestamp before it
	maxTs := int64(math.MinInt64)
	sc := newScanner(r, path, 0, size, base, nil)
	sc.readAhead = 1 << 20
	sc.keys, sc.verified, sc.crcOnly = kc.keys, kc.verified, kc.crcOnly
	for {
		b, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, err
		}
		starts[b.pos] = b.base
		maxBefore[b.base-base] = maxTs
		maxTs = max(maxTs, b.maxTs)
	}
	maxBefore[sealNext-base] = maxTs
	be := binary.BigEndian
	prev := int64(0)
	for i := 0; i < len(idxData); i += idxEntrySize {
		rel, pos := int64(be.Uint32(idxData[i:])), int64(be.Uint32(idxData[i+4:]))
		if b, ok := starts[pos]; !ok || b != base+rel || rel <= prev {
			return false, nil
		}
		prev = rel
	}
	prev = 0
	for i := 0; i < len(tidxData); i += tidxEntrySize {
		ts, rel := int64(be.Uint64(tidxData[i:])), int64(be.Uint32(tidxData[i+8:]))
		if m, ok := maxBefore[rel]; !ok || m != ts || rel <= prev {
			return false, nil
		}
		prev = rel
	}
	return prev == sealNext-base, nil
}
