//go:build !linux

package storage

// filesystemSpace is reported on Linux only.
func filesystemSpace(string) (size, avail int64, ok bool) { return 0, 0, false }
