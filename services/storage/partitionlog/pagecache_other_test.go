//go:build !linux

package partitionlog

import "errors"

func evictFromPageCache(string) (float64, error) {
	return 1, errors.New("evicting files from the page cache is only implemented on Linux")
}
