package delivery

// SetCheckpointBytes changes how much state is appended between checkpoints
// and returns a function that restores it.
func SetCheckpointBytes(n int) (restore func()) {
	old := checkpointBytes
	checkpointBytes = n
	return func() { checkpointBytes = old }
}
