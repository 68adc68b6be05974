package dms_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"

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
