//go:build !linux

package partitionlog

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
