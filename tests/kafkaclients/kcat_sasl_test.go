package kafkaclients_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestKcatSASL: kcat (librdkafka) authenticates to a dmsd with
// -auth.enabled with SCRAM-SHA-512 and SCRAM-SHA-256, produces and reads
// back; a wrong password fails with the server's message, and PLAIN works
// as well. librdkafka needs SaslHandshake v0 advertised before it will
// authenticate, and repeats its nonce in SCRAM's final message: both were
// found here.
func TestKcatSASL(t *testing.T) {
	kcat := tool(t, "DMS_KAFKA_KCAT")
	const password = "correct-horse-battery-staple"
	t.Setenv("DMS_ADMIN_PASSWORD", password)
	srv := startServer(t, "-auth.enabled")
	addr := srv.KafkaAddr
	sasl := func(mech, pass string) []string {
		return []string{"-b", addr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=" + mech,
			"-X", "sasl.username=admin", "-X", "sasl.password=" + pass}
	}
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			topic := "kcat-" + strings.ToLower(mech)
			runWithInput(t, "one\ntwo\nthree\n", kcat, append(sasl(mech, password), "-P", "-t", topic, "-X", "acks=all")...)
			out := run(t, kcat, append(sasl(mech, password), "-C", "-t", topic, "-o", "beginning", "-c", "3", "-f", "%s\n")...)
			// Auto-created topics have several partitions: order is per partition.
			require.ElementsMatch(t, []string{"one", "two", "three"}, strings.Fields(out))
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, append(sasl("SCRAM-SHA-512", "not the password"), "-L", "-m", "5")...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "%s", out)
		require.Contains(t, string(out), "SASL authentication error: the user name or password is wrong")
	})
	// franz-go's independent view: what kcat produced is there.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.SASL(scram.Auth{User: "admin", Pass: password}.AsSha256Mechanism()),
		kgo.ConsumeTopics("kcat-scram-sha-512"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	var got []string
	for len(got) < 3 {
		fs := cl.PollFetches(ctxT(t))
		require.NoError(t, fs.Err0())
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	require.ElementsMatch(t, []string{"one", "two", "three"}, got)
}
