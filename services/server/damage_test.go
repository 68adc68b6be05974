package server_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// partitionBatches maps the record batches of a partition's segment files
// (format: storage/partitionlog/doc.go) to byte ranges and offsets.
type segmentBatch struct {
	file             string
	pos, end         int64
	firstOff, lastOf int64
}

func partitionBatches(t *testing.T, dir string) []segmentBatch {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	var out []segmentBatch
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		require.NoError(t, err)
		for pos := 0; pos+39 <= len(data); {
			end := pos + 12 + int(binary.BigEndian.Uint32(data[pos+8:]))
			base := int64(binary.BigEndian.Uint64(data[pos:]))
			count := int64(binary.BigEndian.Uint32(data[pos+19:]))
			out = append(out, segmentBatch{seg, int64(pos), int64(end), base, base + count - 1})
			pos = end
		}
	}
	return out
}

// storageFiles lists every file of every log under the storage directory.
func storageFiles(t *testing.T, dataDir string) []string {
	var out []string
	require.NoError(t, filepath.WalkDir(filepath.Join(dataDir, "storage"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".log") || strings.HasSuffix(p, "index")) {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 {
				out = append(out, p)
			}
		}
		return nil
	}))
	return out
}

// TestDamagedDataDirDeliversEveryIntactMessage loads a queue, damages a
// random byte range of a random file of the data directory's logs (queue
// segments, indexes, the group's state log), restarts, and checks that the
// group still receives every acknowledged message whose batch the damage did
// not touch: no 500, no stall; what it skips is counted as lost.
func TestDamagedDataDirDeliversEveryIntactMessage(t *testing.T) {
	const messages = 400
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for round := range 6 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			s := testserver.Start(t, testserver.WithFlags("-storage.segment-bytes", "8192", "-storage.internal-segment-bytes", "4096"))
			q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "damaged", PartitionCount: 1})
			g := s.CreateGroup(t, q, "readers")
			var bodies []string
			for i := range messages / 10 {
				batch := make([]string, 10)
				for j := range batch {
					batch[j] = fmt.Sprintf("m-%04d-%s", i*10+j, strings.Repeat("x", rng.IntN(100)))
				}
				s.Send(t, q, batch...)
				bodies = append(bodies, batch...)
			}
			// The group consumes (and acknowledges) the first quarter, so
			// that its state log has content to damage too.
			firstQuarter := map[string]bool{}
			for len(firstQuarter) < messages/4 {
				got := s.Receive(t, g, messages/4-len(firstQuarter), time.Minute)
				require.NotEmpty(t, got)
				s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got...)
				for _, b := range testserver.Bodies(got) {
					firstQuarter[b] = true
				}
			}

			partDir := filepath.Join(s.DataDir, "storage", "q", q.GetId(), "0")
			files := storageFiles(t, s.DataDir)
			if round%2 == 1 {
				// Every other round damages segment data, the rest any
				// file (most are indexes).
				files = slices.DeleteFunc(files, func(f string) bool { return !strings.HasSuffix(f, ".log") })
			}
			target := files[rng.IntN(len(files))]
			fi, err := os.Stat(target)
			require.NoError(t, err)
			lo := rng.Int64N(fi.Size())
			hi := min(fi.Size(), lo+1+rng.Int64N(600))
			var batches []segmentBatch
			intact := map[string]bool{}
			s.RestartWith(t, func() {
				batches = partitionBatches(t, partDir)
				data, err := os.ReadFile(target)
				require.NoError(t, err)
				for i := lo; i < hi; i++ {
					data[i] = byte(rng.Uint32())
				}
				require.NoError(t, os.WriteFile(target, data, 0o644))
			})
			for _, b := range batches {
				if b.file == target && b.end > lo && b.pos < hi {
					continue // damaged: may be lost
				}
				for o := b.firstOff; o <= b.lastOf; o++ {
					intact[bodies[o]] = true
				}
			}
			t.Logf("damaged %s bytes [%d, %d): %d of %d messages intact", strings.TrimPrefix(target, s.DataDir), lo, hi, len(intact), messages)

			got := map[string]bool{}
			for empty := 0; empty < 3; {
				resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{
					Group: g.GetName(), MaxMessages: 100, VisibilityTimeout: durationpb.New(time.Minute), WaitTime: durationpb.New(200 * time.Millisecond)})
				require.NoError(t, err, "receiving after damage")
				if len(resp.GetMessages()) == 0 {
					empty++
					continue
				}
				s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, resp.GetMessages()...)
				for _, b := range testserver.Bodies(resp.GetMessages()) {
					got[b] = true
				}
			}
			for b := range intact {
				// Acknowledged before the damage, a message may come again
				// (its ack may have been in the damaged state log), or not.
				require.True(t, got[b] || firstQuarter[b], "intact message %s was never delivered", b[:6])
			}
		})
	}
}
