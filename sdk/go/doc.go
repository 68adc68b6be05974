// Package dms is the Go client of DMS, the distributed message service. It
// wraps the gRPC API of proto/dms/v1 with plain Go types, a batching
// Producer and a handler-driven Consumer.
//
// # Connecting
//
// [Dial] returns a [Client] for a server's gRPC address; it is insecure by
// default (for a server on the local host) and takes credentials, gRPC dial
// options and an optional *slog.Logger as options. Everything else is scoped
// to a project:
//
//	client, err := dms.Dial(ctx, "localhost:9090")
//	...
//	defer client.Close()
//	project := client.Project("0123456789abcdef0123456789abcdef")
//
// Wherever a method takes a queue or a consumer group, it may be named by its
// display name or by its id.
//
// # Managing queues and groups
//
// [Project] has [Project.CreateQueue], [Project.GetQueue], [Project.ListQueues]
// (an iterator that fetches page by page), [Project.DeleteQueue], and
// [Project.CreateGroup], [Project.GetGroup], [Project.ListGroups],
// [Project.DeleteGroup].
//
// # Sending
//
// [Project.Send] stores a batch of messages with one call. A [Producer] takes
// messages from any number of goroutines and coalesces them into calls of up
// to 1000 messages and 8 MiB, with a linger time, a bound on calls in flight
// and on buffered bytes, and retries of calls that failed with Unavailable or
// DeadlineExceeded. The server has no idempotent-producer key yet: a retried
// call that had in fact been stored stores its messages twice, so delivery
// is at least once.
//
// # Receiving
//
// [Project.Receive] long-polls a consumer group for messages and [Project.Ack]
// settles them (success, or fail to have them delivered again at once). A
// [Consumer] runs that loop for you: it calls a [Handler] (or a [BatchHandler])
// with a configurable number running at once, acks success when the handler
// returns nil and fail when it returns an error, and stops cleanly on Stop or
// when its context is canceled, waiting for running handlers and acking what
// they finished. The server has no call yet to extend a message's visibility
// timeout, so handlers must finish within it ([WithVisibilityTimeout]).
//
// # Errors
//
// Calls fail with an [*Error] carrying the gRPC code, the stable reason the
// server attached (a [Reason] such as [ReasonQueueNotFound], from the
// google.rpc.ErrorInfo detail of domain "dms.opendms.io") and a message.
// Branch on reasons and codes, never on messages:
//
//	if dms.ReasonOf(err) == dms.ReasonQueueNotFound { ... }
//	if dms.IsAlreadyExists(err) { ... }
//	var e *dms.Error
//	if errors.As(err, &e) { log.Print(e.Code, e.Reason) }
//
// Acks that the server could not apply are reported per handle in [AckResult],
// with their reason (typically ReasonReceiptHandleExpired).
package dms
