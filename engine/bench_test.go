package engine

import (
	"errors"
	"testing"

	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/require"
)

// These benchmarks run provider and consumer in one process, each node on its
// own Run goroutine, so the allocations they report (b.ReportAllocs) are the
// hot path's on both sides together: publish, Event_update encode/decode,
// delivery, Payload_consumed, slot release. Cross-process numbers against a
// raw socket baseline are in engine/internal/benchmark (gwipc bench).

var benchSvc = ServiceID{Interface: Interface{ID: "bench.inproc", Major: 1}, Instance: "0"}

const benchPayload = 64

// benchPair connects a listener offering benchSvc (event 0, 64 slots of
// 64 bytes) and a dialler subscribed to event 0 with handler, both running.
// It returns once the subscription is active. The subscriber may hold the
// whole pool: with the default share (half of it) a window of updates whose
// slots are still on their way back would be dropped for it, not waited for.
func benchPair(b *testing.B, handler func(Sample)) *Offer {
	b.Helper()
	path := socketPath(b)
	l := listen(b, path, &Config{Name: "bench-provider"})
	d := dial(b, path, &Config{Name: "bench-consumer"})
	offer, err := l.Offer(benchSvc, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: benchPayload, SlotCount: 64}, SubscriberSlots: 64})
	require.NoError(b, err)
	px, err := d.Require(benchSvc, nil)
	require.NoError(b, err)
	require.NoError(b, px.Subscribe(0, Updates, handler))
	eventually(b, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscription active")
	return offer
}

// publishRetry publishes data, yielding while the pool is exhausted (slots
// come back when the consumer's Payload_consumed reaches the provider's Run
// goroutine). It returns how many attempts found no slot.
func publishRetry(b *testing.B, o *Offer, data []byte) (noSlot int) {
	spinUntil(b, func() bool {
		err := o.Publish(0, data)
		if err != nil && !errors.Is(err, ErrNoSlot) {
			b.Fatalf("Publish: %v", err)
		}
		if err != nil {
			noSlot++
		}
		return err == nil
	}, "a free slot")
	return noSlot
}

// BenchmarkPublishDeliver measures one 64-byte event from Publish to the
// consumer's handler. "lockstep" waits for each handler before the next
// publish (a latency-bound ping, two goroutine wakeups per op); "pipelined"
// publishes a window of 32 events and then waits for all of them
// (throughput-bound, the engine's batching at work). Either way ns/op and
// allocs/op are per message, for both nodes together.
func BenchmarkPublishDeliver(b *testing.B) {
	b.Run("lockstep", func(b *testing.B) {
		done := make(chan struct{}, 1)
		offer := benchPair(b, func(Sample) { done <- struct{}{} })
		data := make([]byte, benchPayload)
		noSlot := 0
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			noSlot += publishRetry(b, offer, data)
			recvWithin(b, done, "the update")
		}
		b.StopTimer()
		b.ReportMetric(float64(noSlot)/float64(b.N), "noslot/op")
	})
	b.Run("pipelined", func(b *testing.B) {
		const window = 32
		done := make(chan struct{}, window)
		offer := benchPair(b, func(Sample) { done <- struct{}{} })
		data := make([]byte, benchPayload)
		noSlot := 0
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; {
			k := min(window, b.N-i)
			for range k {
				noSlot += publishRetry(b, offer, data)
			}
			for range k {
				recvWithin(b, done, "an update")
			}
			i += k
		}
		b.StopTimer()
		b.ReportMetric(float64(noSlot)/float64(b.N), "noslot/op")
	})
}

// BenchmarkPublishNoSubscriber measures Publish when nobody listens: the
// copy into a slot and its immediate release. "no-peer" has no connection
// at all; "unsubscribed" has a bound consumer that did not subscribe to the
// event. Neither sends anything.
func BenchmarkPublishNoSubscriber(b *testing.B) {
	geo := shm.Geometry{SlotSize: benchPayload, SlotCount: 64}
	run := func(b *testing.B, offer *Offer) {
		data := make([]byte, benchPayload)
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := offer.Publish(0, data); err != nil {
				b.Fatalf("Publish: %v", err)
			}
		}
	}
	b.Run("no-peer", func(b *testing.B) {
		l := listen(b, socketPath(b), nil)
		offer, err := l.Offer(benchSvc, &OfferConfig{Events: 1, Geometry: geo})
		require.NoError(b, err)
		run(b, offer)
	})
	b.Run("unsubscribed", func(b *testing.B) {
		path := socketPath(b)
		l := listen(b, path, nil)
		d := dial(b, path, nil)
		offer, err := l.Offer(benchSvc, &OfferConfig{Events: 1, Geometry: geo})
		require.NoError(b, err)
		px, err := d.Require(benchSvc, nil)
		require.NoError(b, err)
		eventually(b, px.Available, "service available")
		run(b, offer)
	})
	b.Run("loan", func(b *testing.B) {
		l := listen(b, socketPath(b), nil)
		offer, err := l.Offer(benchSvc, &OfferConfig{Events: 1, Geometry: geo})
		require.NoError(b, err)
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ln, err := offer.Loan(0)
			if err != nil {
				b.Fatalf("Loan: %v", err)
			}
			ln.Bytes()[0] = 1
			if err := ln.Publish(benchPayload); err != nil {
				b.Fatalf("Loan.Publish: %v", err)
			}
		}
	})
}

// BenchmarkCallAsync measures one method call and its reply (64-byte
// request and reply) between two in-process nodes, each iteration waiting
// for the completion. Allocations count the whole process.
func BenchmarkCallAsync(b *testing.B) {
	path := socketPath(b)
	l := listen(b, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) { c.Reply(c.Data()) }})
	if err != nil {
		b.Fatal(err)
	}
	d := dial(b, path, nil)
	px, err := d.Require(sensor, nil)
	if err != nil {
		b.Fatal(err)
	}
	eventually(b, px.Available, "available")
	req := make([]byte, 64)
	done := make(chan error, 1)
	complete := func(_ Reply, err error) { done <- err }
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := px.CallAsync(0, req, CallOptions{}, complete); err != nil {
			b.Fatal(err)
		}
		if err := recvWithin(b, done, "the call's completion"); err != nil {
			b.Fatal(err)
		}
	}
}
