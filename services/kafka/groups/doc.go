// Package groups is the coordinator of Kafka's classic consumer groups
// (JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the committed offsets),
// kept durably in storage's replicated internal logs the way the delivery
// role keeps DMS consumer groups.
//
// # Ownership
//
// A group belongs to the delivery shard its key (project/group) hashes to,
// and its coordinator is the node that owns that shard, in the shard's
// owner epoch. Every write carries that epoch, so storage refuses the writes
// of a node that lost the shard; the new owner's first read of the log is a
// fencing one, which waits for the writes storage accepted before. A
// request reaching a node that does not own the group's shard is answered
// NOT_COORDINATOR, and FindCoordinator names the owner. A shard is loaded
// (its log replayed) on first use in an epoch; meanwhile its groups answer
// COORDINATOR_LOAD_IN_PROGRESS, which clients retry.
//
// # The log
//
// One log per delivery shard, `k/groups/{shard}`, holds what Kafka keeps in
// __consumer_offsets, in Kafka's own encodings (kmsg's GroupMetadataKey and
// Value, OffsetCommitKey and Value): a record's payload is the key and the
// value, each prefixed by its int32 length, the value's length -1 for a
// tombstone. The latest record of a key wins. Group metadata (generation,
// protocol, leader, members with their assignments) is written when a
// rebalance completes with the leader's SyncGroup and when a group becomes
// empty; an offset when it is committed. A checkpoint is a record with an empty key
// followed by the current value of every live key; the log before the
// record is then trimmed, so a replay reads at most about
// CheckpointBytes plus the shard's live state.
//
// # The state machine
//
// Empty → PreparingRebalance (a member joins) → CompletingRebalance (every
// known member has rejoined, or the rebalance timeout removed those that did
// not; the generation is bumped, a protocol chosen by vote and the leader
// alone given the member list) → Stable (the leader's SyncGroup brought the
// assignments) → PreparingRebalance again when a member joins, leaves,
// changes its protocols or misses its session timeout; Empty when the last
// member goes; Dead once deleted.
package groups
