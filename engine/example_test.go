package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gwipc/gwipc/engine"
)

// A provider and a consumer exchanging one event. In real use they are two
// processes; here both nodes live in one for brevity.
func Example() {
	dir, _ := os.MkdirTemp("", "gwipc-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sock")

	provider, err := engine.Listen(path, &engine.Config{Name: "provider"})
	if err != nil {
		panic(err)
	}
	defer provider.Close()
	consumer, err := engine.Dial(path, &engine.Config{Name: "consumer"})
	if err != nil {
		panic(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go provider.Run(ctx)
	go consumer.Run(ctx)

	svc := engine.ServiceID{Interface: engine.Interface{ID: "com.example.sensor", Major: 1}, Instance: "front"}
	offer, err := provider.Offer(svc, &engine.OfferConfig{Events: 1})
	if err != nil {
		panic(err)
	}
	subscribed := make(chan struct{})
	proxy, err := consumer.Require(svc, &engine.ProxyConfig{
		OnSubscription: func(event uint16, err error) { close(subscribed) },
	})
	if err != nil {
		panic(err)
	}
	received := make(chan string, 1)
	proxy.Subscribe(0, engine.Updates, func(s engine.Sample) {
		received <- fmt.Sprintf("event %d #%d: %s", s.Event(), s.Seq(), s.Data())
	})
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		fmt.Println("not subscribed")
		return
	}
	offer.Publish(0, []byte("21.5 C"))
	select {
	case msg := <-received:
		fmt.Println(msg)
	case <-time.After(10 * time.Second):
		fmt.Println("no update")
	}
	// Output: event 0 #1: 21.5 C
}
