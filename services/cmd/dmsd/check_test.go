package main_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// runCheck runs `dmsd check` on a data directory and returns its exit
// status and output.
func runCheck(t *testing.T, bin, dataDir string) (int, string) {
	out, err := exec.Command(bin, "check", "-data-dir", dataDir).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	require.NoError(t, err, string(out))
	return 0, string(out)
}

// TestCheckCommand: `dmsd check` refuses a data directory in use, passes an
// intact one, and reports damage in a queue's segment with a non-zero exit
// and where it is, changing nothing.
func TestCheckCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dmsd")
	}
	d := buildAndStart(t)
	const project = "0123456789abcdef0123456789abcdef"
	var queue struct{ ID string }
	d.do(t, "POST", "/v1.0/"+project+"/queues", map[string]any{"name": "checked"}, 201, &queue)
	for i := range 30 {
		d.do(t, "POST", "/v1.0/"+project+"/queues/"+queue.ID+"/messages", map[string]any{"messages": []any{map[string]any{"body": fmt.Sprint("message ", i)}}}, 201, nil)
	}
	code, out := runCheck(t, d.bin, d.dataDir)
	require.Equal(t, 2, code, "a data directory in use is refused: %s", out)
	require.Contains(t, out, "is dmsd running?")

	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	_ = d.cmd.Wait()
	code, out = runCheck(t, d.bin, d.dataDir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "0 problems")

	// Flip a byte of the first batch that holds a message, in the middle of
	// its partition's segment.
	segs, err := filepath.Glob(filepath.Join(d.dataDir, "storage", "q", queue.ID, "*", "*.log"))
	require.NoError(t, err)
	var seg string
	var data []byte
	for _, s := range segs {
		if b, _ := os.ReadFile(s); len(b) > 0 {
			seg, data = s, b
			break
		}
	}
	require.NotEmpty(t, seg)
	second := 12 + int(binary.BigEndian.Uint32(data[8:])) // where the second batch starts
	if second >= len(data) {
		second = 0
	}
	data[second+45] ^= 0x08
	require.NoError(t, os.WriteFile(seg, data, 0o644))
	code, out = runCheck(t, d.bin, d.dataDir)
	t.Log(out)
	if second == 0 {
		require.Equal(t, 0, code, "a damaged only batch reads as a torn tail: %s", out)
		require.Contains(t, out, "torn tail")
	} else {
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "DAMAGED")
		require.Contains(t, out, filepath.Base(seg))
		require.Contains(t, out, fmt.Sprintf("at position %d", second))
	}
	after, err := os.ReadFile(seg)
	require.NoError(t, err)
	require.Equal(t, data, after, "check changes nothing")
}
