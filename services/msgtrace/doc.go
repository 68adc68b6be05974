// Package msgtrace answers MessageTraceService: the life of a message,
// assembled when asked from logs the service keeps anyway, so that tracing
// stays on at any rate without a write per message.
//
// Where each step comes from:
//
//   - produced: the message's record in its partition (id, time, partition,
//     offset, key, tags, a `traceparent` attribute), and the ProducerInfo on
//     the first record of its append (principal, front end, the send call's
//     trace context): one per batch, written by ingest.
//   - found by id: message ids are UUIDv7, so an id carries the millisecond
//     it was assigned; each partition's time index (FindOffset) leads to a
//     few batches around it.
//   - stored: the partition's placement (replicas, in-sync replicas, leader)
//     and its log bounds (committed = below the high watermark).
//   - delivered, acked, failed, sent back for a retry, extended, dead
//     lettered, redriven, skipped: each consumer group's delivery-state log
//     (StateRecord, with its timestamp), which the delivery role writes
//     before it answers anyway; StateRecord.consumer says who received. A
//     visibility timeout is what an in-flight delivery became when a failure
//     is recorded at or after its deadline (or when its deadline passed with
//     nothing recorded).
//   - dead letters: the group's dead-letter log (DeadLetterInfo: count,
//     reason, time) and the dead-letter queue's own state log.
//
// Limit: a delivery-state log is trimmed at its checkpoints (every 16 MiB
// of state; -delivery.state-history-checkpoints keeps more), so a group's
// per-event history reaches back that far; before it the trace gives the
// group's state at the checkpoint (HISTORY_TRIMMED: acked, or so many
// deliveries) rather than each event.
//
// Why not a trace log written per event: at 100k msgs/s that is 300k+
// records a second (produce, deliver, ack) of writes and fsyncs on the hot
// path, a second copy of what the state logs already hold durably and in
// order. Assembling at query time costs the reader (a trace by id reads
// each group's state log, up to ~16 MiB, in 0.1-0.3 s while the queue runs
// at full rate) instead of every message.
package msgtrace
