package dms_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

// The examples talk to the dmsd that TestMain starts; against a dmsd run with
// its defaults the address is "localhost:9090".

// Produce messages from several goroutines through a batching Producer.
func Example_produce() {
	ctx := context.Background()
	client, err := dms.Dial(ctx, serverAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	project := client.Project("example-produce")
	if _, err := project.CreateQueue(ctx, dms.QueueConfig{Name: "orders"}); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}

	producer := dms.NewProducer(project, "orders")
	futures := make(chan *dms.SendFuture, 100)
	for w := range 4 {
		go func() {
			for i := range 25 {
				futures <- producer.SendAsync(ctx, dms.Message{
					Body:       fmt.Appendf(nil, `{"order":%d}`, w*25+i),
					Attributes: map[string]any{"worker": w},
				})
			}
		}()
	}
	sent := 0
	for range 100 {
		if _, err := (<-futures).Wait(ctx); err != nil {
			log.Fatal(err)
		}
		sent++
	}
	// Close sends whatever is still buffered.
	if err := producer.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent", sent)
	// Output: sent 100
}

// Consume with a handler; a handler error has the message delivered again.
func Example_consume() {
	ctx := context.Background()
	client, err := dms.Dial(ctx, serverAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	project := client.Project("example-consume")
	if _, err := project.CreateQueue(ctx, dms.QueueConfig{Name: "emails", Partitions: 1}); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.CreateGroup(ctx, "emails", "mailer"); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.Send(ctx, "emails", dms.Message{Body: []byte("hello")}, dms.Message{Body: []byte("world")}); err != nil {
		log.Fatal(err)
	}

	// One partition and one handler at a time keep the printed order.
	ctx, stop := context.WithCancel(ctx)
	var done atomic.Int32
	consumer := dms.NewConsumer(project, "emails", "mailer", func(ctx context.Context, m *dms.ReceivedMessage) error {
		fmt.Printf("%s (delivery %d)\n", m.Body, m.DeliveryCount)
		if string(m.Body) == "world" && m.DeliveryCount == 1 {
			return errors.New("mail server busy") // acked as failed: delivered again
		}
		if done.Add(1) == 2 {
			stop() // Run returns once this handler's ack is sent
		}
		return nil
	}, dms.WithConcurrency(1))
	if err := consumer.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// hello (delivery 1)
	// world (delivery 1)
	// world (delivery 2)
}

// Branch on the stable reason of an error.
func ExampleReasonOf() {
	ctx := context.Background()
	client, err := dms.Dial(ctx, serverAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	_, err = client.Project("example-errors").GetQueue(ctx, "no-such-queue")
	switch dms.ReasonOf(err) {
	case dms.ReasonQueueNotFound:
		fmt.Println("no such queue")
	default:
		log.Fatal(err)
	}
	var e *dms.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, e.Reason)
	}
	// Output:
	// no such queue
	// NotFound QUEUE_NOT_FOUND
}

// Stream messages with a Subscription: the server pushes them while the
// subscription has credits, and acks go back on the same stream.
func Example_subscribe() {
	ctx := context.Background()
	client, err := dms.Dial(ctx, serverAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	project := client.Project("example-subscribe")
	if _, err := project.CreateQueue(ctx, dms.QueueConfig{Name: "clicks", Partitions: 1}); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.CreateGroup(ctx, "clicks", "stats"); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.Send(ctx, "clicks", dms.Message{Body: []byte("home")}, dms.Message{Body: []byte("cart")}, dms.Message{Body: []byte("checkout")}); err != nil {
		log.Fatal(err)
	}

	sub, err := project.Subscribe(ctx, "clicks", "stats", dms.SubscribeOptions{Credits: 100})
	if err != nil {
		log.Fatal(err)
	}
	for m := range sub.Messages() {
		fmt.Println(string(m.Body))
		if err := sub.Ack(m.Success()); err != nil {
			log.Fatal(err)
		}
		if string(m.Body) == "checkout" {
			break
		}
	}
	// Close sends the acks still pending and ends the stream.
	if err := sub.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// home
	// cart
	// checkout
}

// Inspect the dead letters of a group and give them back to it.
func Example_deadLetters() {
	ctx := context.Background()
	client, err := dms.Dial(ctx, serverAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	project := client.Project("example-dead-letters")
	// A message that fails once becomes a dead letter.
	if _, err := project.CreateQueue(ctx, dms.QueueConfig{Name: "payments", Partitions: 1, DeadLetters: true, MaxConsumeCount: 1}); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.CreateGroup(ctx, "payments", "billing"); err != nil && !dms.IsAlreadyExists(err) {
		log.Fatal(err)
	}
	if _, err := project.Send(ctx, "payments", dms.Message{Body: []byte("invoice 17")}); err != nil {
		log.Fatal(err)
	}
	msgs, err := project.Receive(ctx, "payments", "billing", dms.ReceiveOptions{WaitTime: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := project.Ack(ctx, "payments", "billing", msgs[0].Fail()); err != nil {
		log.Fatal(err)
	}

	dead, err := project.ReceiveDeadLetters(ctx, "payments", "billing", dms.ReceiveOptions{WaitTime: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range dead {
		fmt.Printf("%s: failed %d time(s), last %s\n", d.Body, d.DeadLetter.FailureCount, d.DeadLetter.LastFailureReason)
		// Fail leaves it a dead letter, available again; Success would
		// remove it for good.
		if _, err := project.AckDeadLetters(ctx, "payments", "billing", d.Fail()); err != nil {
			log.Fatal(err)
		}
	}

	// The bug is fixed: give the dead letters back to the group.
	results, err := project.RedriveDeadLetters(ctx, "payments", "billing", dms.RedriveOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("redriven:", len(results), results[0].Redriven)
	again, err := project.Receive(ctx, "payments", "billing", dms.ReceiveOptions{WaitTime: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s is back (delivery %d)\n", again[0].Body, again[0].DeliveryCount)
	if _, err := project.Ack(ctx, "payments", "billing", again[0].Success()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// invoice 17: failed 1 time(s), last FAILED_BY_CONSUMER
	// redriven: 1 true
	// invoice 17 is back (delivery 1)
}
