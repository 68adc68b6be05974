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
// DeadlineExceeded. Each batch carries an idempotence key, so a retried call
// that had in fact been stored returns the first attempt's results instead
// of storing its messages twice.
//
// A message may carry tags (for consumer-side filtering) and an ordering
// key: on a FIFO queue messages with one key are delivered in order, a key
// waiting while its earlier message is in flight, and different keys
// proceed in parallel; on a normal queue the key picks the partition. A
// message sent with a Delay or DeliverTime is scheduled: it stays hidden
// until its time, and its SendResult.ScheduleID cancels it
// ([Project.CancelScheduledMessages]) or moves it
// ([Project.RescheduleMessage]) until then.
//
// # Receiving
//
// [Project.Receive] long-polls a consumer group for messages and [Project.Ack]
// settles them: success; fail, to have them delivered again at once; or
// redeliver ([AckRedeliver]), to have them delivered again after the
// server's retry delay (30 s by default, growing with each failed attempt
// along a schedule set on the server). A [Consumer] runs that loop for you:
// it calls a [Handler] (or a [BatchHandler]) with a configurable number
// running at once, acks success when the handler returns nil, redeliver
// when it returns an error made by [Redeliver], and fail for any other
// error, and stops cleanly on Stop or when its context is canceled, waiting
// for running handlers and acking what they finished. The server has no call
// yet to extend a message's visibility timeout, so handlers must finish
// within it ([WithVisibilityTimeout]).
//
//	consumer := dms.NewConsumer(project, "orders", "billing",
//		func(ctx context.Context, m *dms.ReceivedMessage) error {
//			if err := charge(ctx, m.Body); errors.Is(err, errGatewayDown) {
//				return dms.Redeliver(err) // again in 30 s or more
//			} else if err != nil {
//				return err // again at once
//			}
//			return nil
//		}, dms.WithConcurrency(16))
//	err := consumer.Run(ctx)
//
// A receive (or a Consumer, [WithTagFilter]) may give a [TagFilter]: the
// group then gets only matching messages. A group keeps the first filter it
// is given; a different one fails with [ReasonTagFilterConflict], and
// [Group.TagFilter] shows it.
//
// A broadcast receive ([ReceiveOptions.Broadcast], [WithBroadcast]) gives one
// consumer, named by its consumer id, every message of the queue by itself,
// with its own position kept by the server and optional auto-ack; the
// group's other consumers are not affected.
//
// [Project.Seek] moves a group's position to a time, to offsets, or to the
// earliest or latest message ([SeekToTime], [SeekToOffsets],
// [SeekToEarliest], [SeekToLatest]): messages from there on are delivered
// again, acked or not.
//
// # Streaming
//
// [Project.Subscribe] opens a [Subscription]: the server pushes messages
// while the subscription has credits, and [Subscription.Ack] sends acks on
// the same stream in batches, consecutive successes of a partition as
// offset ranges, each ack giving its credit back. It moves several times as
// many messages per second as Receive and Ack. A Consumer made with
// [WithStreaming] uses one.
//
//	sub, err := project.Subscribe(ctx, "orders", "billing", dms.SubscribeOptions{Credits: 500})
//	...
//	for m := range sub.Messages() {
//		process(m)
//		sub.Ack(m.Success())
//	}
//	err = sub.Err() // why the stream ended
//
// # Dead letters
//
// On a queue with [QueueConfig.DeadLetters], a message that failed
// MaxConsumeCount times for a group becomes a dead letter of that group
// ([GroupStats.DeadLetters] counts them). [Project.ReceiveDeadLetters] and
// [Project.AckDeadLetters] handle them like messages, each with its
// [DeadLetterInfo]; [NewDeadLetterConsumer] runs a Consumer over them; and
// [Project.RedriveDeadLetters] gives them back to the group, all of them or
// those chosen by id or tags.
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
