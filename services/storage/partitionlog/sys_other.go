//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package partitionlog

import "os"

func lockFile(*os.File) error { return nil }
