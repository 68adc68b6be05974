package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of the CPU times in
// /proc/<pid>/stat; it is 100 on every architecture Go runs Linux on.
const clockTicks = 100

// ProcStats is what a process used while a run was measured.
type ProcStats struct {
	PID int `json:"pid"`
	// CPUPercent is CPU time over wall time while measuring; 100 is one
	// core busy, 200 both cores of the benchmark machine.
	CPUPercent float64 `json:"cpu_percent"`
	// RSSMaxMB and RSSEndMB are the largest resident set seen (sampled every
	// interval) and the one at the end, in MiB.
	RSSMaxMB float64 `json:"rss_max_mb"`
	RSSEndMB float64 `json:"rss_end_mb"`
}

// procSampler follows one process through /proc.
type procSampler struct {
	pid      int
	start    time.Time
	cpuStart float64
	rssMax   float64
	rssEnd   float64
	ok       bool
}

func newProcSampler(pid int) *procSampler {
	s := &procSampler{pid: pid}
	if pid > 0 {
		s.reset()
	}
	return s
}

// reset starts the CPU accounting over, at the start of measuring.
func (s *procSampler) reset() {
	cpu, err := procCPUSeconds(s.pid)
	s.ok = err == nil
	s.start, s.cpuStart, s.rssMax = time.Now(), cpu, 0
	s.sample()
}

func (s *procSampler) sample() {
	if !s.ok {
		return
	}
	if rss, err := procRSSMB(s.pid); err == nil {
		s.rssEnd = rss
		s.rssMax = max(s.rssMax, rss)
	}
}

// stats ends the accounting; nil when the process could not be read.
func (s *procSampler) stats() *ProcStats {
	if !s.ok {
		return nil
	}
	s.sample()
	cpu, err := procCPUSeconds(s.pid)
	if err != nil {
		return nil
	}
	wall := time.Since(s.start).Seconds()
	return &ProcStats{
		PID:        s.pid,
		CPUPercent: 100 * (cpu - s.cpuStart) / wall,
		RSSMaxMB:   s.rssMax,
		RSSEndMB:   s.rssEnd,
	}
}

// procCPUSeconds is user plus system CPU time of pid, from /proc/<pid>/stat.
func procCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces, so
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: bad CPU times", pid)
	}
	return float64(utime+stime) / clockTicks, nil
}

// procRSSMB is the resident set of pid in MiB, from /proc/<pid>/status.
func procRSSMB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/%d/status: VmRSS %q", pid, rest)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("bench: /proc/%d/status: no VmRSS", pid)
}
