package dms

import (
	"context"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how patiently a failed call is repeated.
type RetryPolicy struct {
	// MaxAttempts counts the first call too: 1 means no retry.
	MaxAttempts int
	// InitialBackoff is the pause before the first retry; it doubles with
	// every retry up to MaxBackoff, and each pause is jittered to between
	// half and all of its value.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

// defaultRetryPolicy is the retry policy of a Producer unless
// WithRetryPolicy says otherwise.
var defaultRetryPolicy = RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}

func (r RetryPolicy) backoff(retry int) time.Duration {
	d := r.InitialBackoff
	for i := 1; i < retry && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	return jitter(d)
}

// jitter spreads pauses of many clients: a duration between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleep pauses for d; it returns false if ctx was done first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
