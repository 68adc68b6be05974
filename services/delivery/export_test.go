package delivery

// SetCheckpointBytes changes how much state is appended between checkpoints
// and returns a function that restores it.
func SetCheckpointBytes(n int) (restore func()) {
	old := checkpointBytes
	checkpointBytes = n
	return func() { checkpointBytes = old }
}

// SetAfterSettleApplied makes s call fn in every Settle after the acks were
// applied and before s forgets the settled deliveries: the window in which
// a failed message may be delivered again.
func SetAfterSettleApplied(s *Session, fn func()) { s.afterApply = fn }
