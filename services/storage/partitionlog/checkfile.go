package partitionlog

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Small metadata files (the leader-epoch history and the truncation intent)
// are text, one record per line, ending with a line "crc32c <8 hex digits>"
// that holds the CRC-32C of every byte before it, so that damage is found
// rather than read as fewer entries. They are replaced atomically: written
// to name.tmp, fsynced, renamed over name, and the directory fsynced.

const checksumPrefix = "crc32c "

// writeChecksummedFile atomically replaces dir/name with body followed by its
// checksum line.
func writeChecksummedFile(dir, name, body string) error {
	tmp := filepath.Join(dir, name+".tmp")
	data := fmt.Appendf([]byte(body), "%s%08x\n", checksumPrefix, crc32.Checksum([]byte(body), castagnoli))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("partitionlog: writing %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("partitionlog: writing %s: %w", name, err)
	}
	return syncDir(dir)
}

// readChecksummedFile returns the lines of dir/name before its checksum line,
// or nil lines and no error if the file does not exist. A stale name.tmp (a
// write interrupted by a crash) is removed. Damage is reported as an error
// wrapping ErrCorrupt.
func readChecksummedFile(dir, name string) (lines []string, exists bool, err error) {
	if err := os.Remove(filepath.Join(dir, name+".tmp")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("partitionlog: removing %s.tmp: %w", name, err)
	}
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("partitionlog: reading %s: %w", path, err)
	}
	lines, err = parseChecksummed(data, path)
	return lines, true, err
}

// parseChecksummed checks the content of a checksummed file (path names it
// in errors) and returns its lines before the checksum line. Damage is
// reported as an error wrapping ErrCorrupt.
func parseChecksummed(data []byte, path string) (lines []string, err error) {
	damaged := func(why string) error {
		return fmt.Errorf("%w: %s is damaged: %s", ErrCorrupt, path, why)
	}
	text := string(data)
	if !strings.HasSuffix(text, "\n") {
		return nil, damaged("it does not end with a complete line")
	}
	i := strings.LastIndex(text[:len(text)-1], "\n") + 1
	body, sum := text[:i], strings.TrimSuffix(text[i:], "\n")
	hex, ok := strings.CutPrefix(sum, checksumPrefix)
	if !ok || len(hex) != 8 {
		return nil, damaged("its last line is not a checksum")
	}
	want, perr := strconv.ParseUint(hex, 16, 32)
	if perr != nil {
		return nil, damaged("its checksum is not hexadecimal")
	}
	if got := crc32.Checksum([]byte(body), castagnoli); uint32(want) != got {
		return nil, damaged(fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got))
	}
	lines = strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if body == "" {
		lines = nil
	}
	return lines, nil
}

// parseInts parses a line of n space-separated decimal int64s.
func parseInts(line string, n int) ([]int64, bool) {
	f := strings.Split(line, " ")
	if len(f) != n {
		return nil, false
	}
	out := make([]int64, n)
	for i, s := range f {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || strconv.FormatInt(v, 10) != s {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}
