package main

/*
#include "capi.h"
*/
import "C"

import (
	"github.com/gwipc/gwipc/capi/internal/handles"
	"github.com/gwipc/gwipc/engine"
)

// A delivered sample or reply is borrowed: its gwipc_sample / gwipc_reply
// is built per delivery with private_ = {node serial, delivery number}.
// Keeping it (only on the loop thread, for the delivery in progress)
// registers the engine's Sample or Reply and gives the kept struct
// private_ = {its serial, tag}; releasing forgets that handle, so copies
// of a released struct are refused, never mistaken for a later one.

// beginDelivery makes v the delivery in progress and returns its number.
func beginDelivery[T any](st *node, c *current[T], v T) uint64 {
	st.deliveries++
	*c = current[T]{n: st.deliveries, v: v}
	return st.deliveries
}

// keepDelivery is gwipc_sample_keep and gwipc_reply_keep: private names
// the borrowed struct; keep keeps the engine's object and returns it.
// Keeping it twice gives the same handle, while that handle is not
// released: once it is, the delivery's slot is given back and it cannot
// be kept again.
func keepDelivery[T any](private *[2]C.uint64_t, which func(*node) *current[T], k func(T) bool,
	kind handles.Kind) (uint64, error) {
	var serial uint64
	err := useSerial(uint64(private[0]), kindNode, func(st *node) error {
		c := which(st)
		if !st.onLoop() || c.n == 0 || c.n != uint64(private[1]) {
			return errBadHandle
		}
		if c.kept != 0 {
			ref, ok := registry.Acquire(c.kept, kind)
			if !ok {
				return errBadHandle // kept, then released
			}
			ref.Release()
			serial = c.kept
			return nil
		}
		if !k(c.v) {
			return errBadHandle
		}
		var err error
		serial, err = addHandle(kind, c.v)
		c.kept = serial
		return err
	})
	return serial, err
}

// deliver runs a subscription's callback for a sample.
func (p *proxy) deliver(s *subscription, smp engine.Sample) {
	if !p.enter() {
		return
	}
	defer p.leave()
	if !s.live() {
		return
	}
	st := p.st
	n := beginDelivery(st, &st.sample, smp)
	defer func() { st.sample = current[engine.Sample]{} }()
	data := smp.Data()
	var requested C.uint8_t
	if smp.Requested() {
		requested = 1
	}
	C.capi_sample(s.cb, s.ud, p.handle(), C.uint16_t(smp.Event()), requested, C.uint64_t(smp.Seq()),
		dataPtr(data), C.size_t(len(data)), C.uint64_t(st.serial), C.uint64_t(n))
}

//export capi_sample_keep
func capi_sample_keep(sample C.capi_csample, kept *C.gwipc_sample) C.int {
	return check(nil, func() error {
		if sample == nil || kept == nil || sample.struct_size != C.sizeof_gwipc_sample {
			return errNull
		}
		serial, err := keepDelivery(&sample.private_, func(st *node) *current[engine.Sample] { return &st.sample },
			engine.Sample.Keep, kindSample)
		if err != nil {
			return err
		}
		*kept = *sample
		kept.kept = 1
		kept.private_ = stored(serial, kindSample)
		return nil
	})
}

//export capi_sample_release
func capi_sample_release(kept *C.gwipc_sample) {
	runVoid(func() {
		if kept == nil {
			return
		}
		releaseKept(&kept.private_, kindSample, engine.Sample.Release)
	})
}

// releaseKept forgets a kept sample's or owned reply's handle and releases
// the engine's object; anything else is ignored.
func releaseKept[T any](private *[2]C.uint64_t, k handles.Kind, release func(T)) {
	if uint64(private[1]) != handles.Tag(k) {
		return
	}
	if obj, ok := registry.Close(uint64(private[0]), k, nil); ok {
		release(obj.(T))
	}
}
