package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// dmsd is a dmsd binary run as a child process, driven over HTTP only.
type dmsd struct {
	bin, dataDir, httpAddr string
	cmd                    *exec.Cmd
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func (d *dmsd) start(t *testing.T) {
	d.httpAddr = freeAddr(t)
	d.cmd = exec.Command(d.bin, "-data-dir", d.dataDir, "-http-addr", d.httpAddr, "-grpc-addr", freeAddr(t), "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0", "-log.level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, d.cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + d.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "dmsd did not become healthy")
}

// buildAndStart builds dmsd from this package and starts it on a fresh data
// directory; the test's cleanup kills it.
func buildAndStart(t *testing.T) *dmsd {
	bin := filepath.Join(t.TempDir(), "dmsd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	d := &dmsd{bin: bin, dataDir: t.TempDir()}
	d.start(t)
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	return d
}

func (d *dmsd) kill(t *testing.T) {
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	_ = d.cmd.Wait()
}

func (d *dmsd) do(t *testing.T, method, path string, body any, want int, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, "http://"+d.httpAddr+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(resp.Body)
	require.Equalf(t, want, resp.StatusCode, "%s %s: %s", method, path, raw.String())
	if out != nil {
		require.NoError(t, json.Unmarshal(raw.Bytes(), out))
	}
}

type consumed struct {
	Message struct {
		Body json.RawMessage `json:"body"`
	} `json:"message"`
	Handler string `json:"handler"`
}

// TestKillNineLosesNothingAcknowledged builds dmsd, produces while it is
// killed with SIGKILL, restarts it and checks that every message whose send
// was answered is there, that acked messages stay acked and that delivered
// but unacked ones come back after their visibility timeout.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dmsd and kills it")
	}
	d := buildAndStart(t)

	const project = "0123456789abcdef0123456789abcdef"
	var queue struct{ ID string }
	d.do(t, "POST", "/v1.0/"+project+"/queues", map[string]any{"name": "crash", "queue_mode": "FIFO"}, 201, &queue)
	var groups struct{ Groups []struct{ ID string } }
	d.do(t, "POST", "/v1.0/"+project+"/queues/"+queue.ID+"/groups", map[string]any{"groups": []any{map[string]string{"name": "g"}}}, 201, &groups)
	base := "/v1.0/" + project + "/queues/" + queue.ID
	consumePath := base + "/groups/" + groups.Groups[0].ID + "/messages?max_msgs=10&ack_wait=15&time_wait=1"

	// 10 messages first; 5 are acked and 5 left in flight.
	for i := range 10 {
		d.do(t, "POST", base+"/messages", map[string]any{"messages": []any{map[string]any{"body": fmt.Sprint(i)}}}, 201, nil)
	}
	var got []consumed
	d.do(t, "GET", consumePath, nil, 200, &got)
	require.Len(t, got, 10)
	var acks []map[string]string
	for _, c := range got[:5] {
		acks = append(acks, map[string]string{"handler": c.Handler, "status": "success"})
	}
	var ackResp struct{ Success, Fail int }
	d.do(t, "POST", base+"/groups/"+groups.Groups[0].ID+"/ack", map[string]any{"message": acks}, 200, &ackResp)
	require.Equal(t, 5, ackResp.Success)

	// Producers keep sending while the process is killed.
	var (
		mu           sync.Mutex
		acknowledged []string
		wg           sync.WaitGroup
	)
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := fmt.Sprintf("p%d-%d", p, i)
				data, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{"body": body}}})
				resp, err := http.Post("http://"+d.httpAddr+base+"/messages", "application/json", bytes.NewReader(data))
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					return
				}
				mu.Lock()
				acknowledged = append(acknowledged, body)
				mu.Unlock()
			}
		}()
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acknowledged) >= 200 }, 30*time.Second, time.Millisecond)
	d.kill(t)
	wg.Wait()
	d.start(t)

	// Everything comes back: the 5 unacked after their 15 s visibility, every
	// acknowledged send, and none of the 5 acked.
	want := map[string]bool{}
	for i := 5; i < 10; i++ {
		want[fmt.Sprintf("%q", fmt.Sprint(i))] = true
	}
	for _, b := range acknowledged {
		want[fmt.Sprintf("%q", b)] = true
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		var batch []consumed
		d.do(t, "GET", consumePath, nil, 200, &batch)
		var acks []map[string]string
		for _, c := range batch {
			body := string(c.Message.Body)
			for i := range 5 {
				require.NotEqual(t, fmt.Sprintf("%q", fmt.Sprint(i)), body, "an acked message was delivered again")
			}
			seen[body] = true
			acks = append(acks, map[string]string{"handler": c.Handler})
		}
		if len(acks) > 0 {
			d.do(t, "POST", base+"/groups/"+groups.Groups[0].ID+"/ack", map[string]any{"message": acks}, 200, nil)
		}
	}
	for b := range want {
		require.Truef(t, seen[b], "message %s was acknowledged to its producer but is lost", b)
	}
	t.Logf("%d sends acknowledged before SIGKILL; all %d expected messages delivered after restart", len(acknowledged), len(want))
}

// TestKillNineWhileConsuming kills dmsd while consumers receive and ack, and
// checks that no message whose ack was answered is delivered again and that
// every other message comes back.
func TestKillNineWhileConsuming(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dmsd and kills it")
	}
	d := buildAndStart(t)

	const project, total = "0123456789abcdef0123456789abcdef", 3000
	var queue struct{ ID string }
	d.do(t, "POST", "/v1.0/"+project+"/queues", map[string]any{"name": "consumed"}, 201, &queue)
	var groups struct{ Groups []struct{ ID string } }
	d.do(t, "POST", "/v1.0/"+project+"/queues/"+queue.ID+"/groups", map[string]any{"groups": []any{map[string]string{"name": "g"}}}, 201, &groups)
	base := "/v1.0/" + project + "/queues/" + queue.ID
	groupPath := base + "/groups/" + groups.Groups[0].ID
	for i := 0; i < total; i += 10 {
		var batch []any
		for j := range 10 {
			batch = append(batch, map[string]any{"body": fmt.Sprint(i + j)})
		}
		d.do(t, "POST", base+"/messages", map[string]any{"messages": batch}, 201, nil)
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	consume := func(addr string) bool {
		resp, err := http.Get("http://" + addr + groupPath + "/messages?max_msgs=10&ack_wait=15&time_wait=1")
		if err != nil {
			return false
		}
		var batch []consumed
		err = json.NewDecoder(resp.Body).Decode(&batch)
		resp.Body.Close()
		if err != nil || len(batch) == 0 {
			return err == nil
		}
		var acks []map[string]string
		for _, c := range batch {
			acks = append(acks, map[string]string{"handler": c.Handler})
		}
		data, _ := json.Marshal(map[string]any{"message": acks})
		resp, err = http.Post("http://"+addr+groupPath+"/ack", "application/json", bytes.NewReader(data))
		if err != nil {
			return false
		}
		var result struct{ Success int }
		err = json.NewDecoder(resp.Body).Decode(&result)
		resp.Body.Close()
		if err != nil {
			return false
		}
		mu.Lock()
		for _, c := range batch[:result.Success] {
			acked[string(c.Message.Body)] = true
		}
		mu.Unlock()
		return true
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for consume(d.httpAddr) {
			}
		}()
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= total/3 }, 60*time.Second, time.Millisecond)
	d.kill(t)
	wg.Wait()
	mu.Lock()
	ackedBefore := len(acked)
	mu.Unlock()

	d.start(t)
	// An ack made durable just before the kill may have lost its answer:
	// the server counts it, the client does not know. At most the acks in
	// flight at the kill (4 consumers × 10).
	var groupsView struct {
		Groups []struct {
			Consumed int64 `json:"consumed_messages"`
		}
	}
	d.do(t, "GET", base+"/groups", nil, 200, &groupsView)
	unanswered := int(groupsView.Groups[0].Consumed) - ackedBefore
	require.GreaterOrEqual(t, unanswered, 0, "the server forgot acks it answered")
	require.LessOrEqual(t, unanswered, 40)
	seen := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for len(seen)+ackedBefore+unanswered < total && time.Now().Before(deadline) {
		var batch []consumed
		d.do(t, "GET", groupPath+"/messages?max_msgs=10&ack_wait=300&time_wait=5", nil, 200, &batch)
		for _, c := range batch {
			body := string(c.Message.Body)
			require.Falsef(t, acked[body], "message %s was acked before the crash and delivered again", body)
			require.Falsef(t, seen[body], "message %s delivered twice after the restart", body)
			seen[body] = true
		}
	}
	require.Equal(t, total, ackedBefore+unanswered+len(seen), "every message is acked before the crash or delivered after it")
	t.Logf("%d acks answered before SIGKILL, %d made durable without an answer; %d delivered after restart", ackedBefore, unanswered, len(seen))
}
