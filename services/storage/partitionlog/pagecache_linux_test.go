package partitionlog

import (
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// evictFromPageCache drops the cached pages of every file in dir
// (posix_fadvise DONTNEED, after an fsync so that they are clean), so that a
// benchmark reads them from the disk without dropping the caches of other
// processes on the machine. It returns the fraction of their pages still
// resident afterwards (mincore), which the benchmarks report.
func evictFromPageCache(dir string) (resident float64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var pages, in int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, err
		}
		const fadvDontNeed = 4
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
			f.Close()
			return 0, errno
		}
		p, r, err := residentPages(f)
		f.Close()
		if err != nil {
			return 0, err
		}
		pages, in = pages+p, in+r
	}
	if pages == 0 {
		return 0, nil
	}
	return float64(in) / float64(pages), nil
}

func residentPages(f *os.File) (pages, resident int64, err error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, 0, err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, 0, err
	}
	defer syscall.Munmap(m)
	ps := int64(os.Getpagesize())
	vec := make([]byte, (fi.Size()+ps-1)/ps)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, 0, errno
	}
	for _, v := range vec {
		resident += int64(v & 1)
	}
	return int64(len(vec)), resident, nil
}
