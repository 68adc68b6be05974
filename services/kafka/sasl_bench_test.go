package kafka_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// BenchmarkSASLHandshake measures what a new authenticated connection
// costs: a franz-go client dials, asks ApiVersions, authenticates and gets
// Metadata (Ping), then closes; "none" is the same against a dmsd without
// authentication. PLAIN costs one argon2id hash on the server; SCRAM costs
// the client 4096 PBKDF2 iterations and the server a few HMACs.
//
//	go test -run '^$' -bench BenchmarkSASLHandshake -benchtime 50x ./kafka/
func BenchmarkSASLHandshake(b *testing.B) {
	b.Run("none", func(b *testing.B) {
		srv := startServer(b)
		pingLoop(b, srv.KafkaAddr, nil)
	})
	b.Setenv("DMS_ADMIN_PASSWORD", saslAdminPassword)
	srv := startServer(b, "-auth.enabled")
	for name, mech := range map[string]sasl.Mechanism{
		"PLAIN":         plainAuth("admin", saslAdminPassword),
		"SCRAM-SHA-256": scram.Auth{User: "admin", Pass: saslAdminPassword}.AsSha256Mechanism(),
		"SCRAM-SHA-512": scram.Auth{User: "admin", Pass: saslAdminPassword}.AsSha512Mechanism(),
	} {
		b.Run(name, func(b *testing.B) { pingLoop(b, srv.KafkaAddr, mech) })
	}
}

func pingLoop(b *testing.B, addr string, mech sasl.Mechanism) {
	opts := []kgo.Opt{kgo.SeedBrokers(addr)}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			b.Fatal(err)
		}
		if err := cl.Ping(context.Background()); err != nil {
			b.Fatal(err)
		}
		cl.Close()
	}
}
