package storage

import "syscall"

// filesystemSpace returns the size of the filesystem holding dir and the
// bytes available to an unprivileged writer on it.
func filesystemSpace(dir string) (size, avail int64, ok bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, 0, false
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, true
}
