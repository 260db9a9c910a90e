package main

/*
#include "capi.h"
*/
import "C"

import (
	"errors"
	"io"
	"slices"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// offer is a gwipc_offer: the engine offer and the C callbacks of its
// gwipc_offer_params.
type offer struct {
	owner
	st     *node
	o      *engine.Offer
	serial uint64

	onSubscription  C.gwipc_subscribers_cb
	onCall          C.gwipc_call_cb
	onCancel        C.gwipc_call_cb
	onUpdateRequest C.gwipc_update_request_cb
}

func (of *offer) handle() *C.gwipc_offer { return (*C.gwipc_offer)(registry.Pointer(of.serial)) }

// offerConfig converts gwipc_offer_params; the callbacks are set for the
// ones C gave.
func (of *offer) offerConfig(p C.capi_coffer_params) (engine.OfferConfig, error) {
	if p == nil || p.struct_size != C.sizeof_gwipc_offer_params {
		return engine.OfferConfig{}, errNull
	}
	if p.n_fields > 0 && (p.fields == nil || p.n_fields > C.size_t(p.events)) {
		return engine.OfferConfig{}, codeErr(C.GWIPC_E_INVAL, "fields: NULL or more than events")
	}
	if uint64(p.subscriber_slots) > 1<<31-1 {
		return engine.OfferConfig{}, errRange
	}
	if p.flags&^C.GWIPC_OFFER_NO_INLINE != 0 {
		return engine.OfferConfig{}, codeErr(C.GWIPC_E_INVAL, "flags: undefined bits set")
	}
	cfg := engine.OfferConfig{
		Events:          uint16(p.events),
		Methods:         uint16(p.methods),
		Geometry:        geometry(p.geometry),
		ReplyGeometry:   geometry(p.reply_geometry),
		SubscriberSlots: int(p.subscriber_slots),
		NoInline:        p.flags&C.GWIPC_OFFER_NO_INLINE != 0,
	}
	if p.n_fields > 0 {
		cfg.Fields = slices.Clone(unsafe.Slice((*uint16)(unsafe.Pointer(p.fields)), int(p.n_fields)))
	}
	of.onSubscription, of.onCall, of.onCancel, of.onUpdateRequest = p.on_subscription, p.on_call, p.on_cancel,
		p.on_update_request
	if of.onSubscription != nil {
		cfg.OnSubscription = of.subscription
	}
	if of.onCall != nil {
		cfg.OnCall = of.call
	}
	if of.onCancel != nil {
		cfg.OnCancel = of.cancelled
	}
	if of.onUpdateRequest != nil {
		cfg.OnUpdateRequest = of.updateRequest
	}
	return cfg, nil
}

func (of *offer) subscription(event uint16, subscribed bool) {
	if !of.enter() {
		return
	}
	defer of.leave()
	C.capi_subscribers(of.onSubscription, of.ud, of.handle(), C.uint16_t(event), cBool(subscribed))
}

func (of *offer) updateRequest(event uint16) {
	if !of.enter() {
		return
	}
	defer of.leave()
	C.capi_update_request(of.onUpdateRequest, of.ud, of.handle(), C.uint16_t(event))
}

// cBool is 1 or 0.
func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

//export capi_node_offer
func capi_node_offer(h *C.gwipc_node, svc C.capi_csvc, params C.capi_coffer_params, out **C.gwipc_offer,
	errp *C.gwipc_error) C.int {
	if out != nil {
		*out = nil
	}
	return check(errp, func() error {
		if out == nil {
			return errNull
		}
		return nodeFn(h, func(st *node) error {
			id, err := serviceID(svc)
			if err != nil {
				return err
			}
			of := &offer{st: st}
			cfg, err := of.offerConfig(params)
			if err != nil {
				return err
			}
			of.ud, of.destroy = C.uintptr_t(uintptr(params.userdata)), params.destroy
			of.serial, err = st.openChild(&of.reg, kindOffer, of, func() (io.Closer, error) {
				of.o, err = st.n.Offer(id, &cfg)
				return of.o, err
			})
			if err != nil {
				return err
			}
			*out = of.handle()
			return nil
		})
	})
}

// offerFn runs fn with the offer of handle h.
func offerFn(h *C.gwipc_offer, fn func(*offer) error) error {
	return use(unsafe.Pointer(h), kindOffer, fn)
}

func (of *offer) node() *node { return of.st }

func (of *offer) close() {
	of.o.Close()
	of.st.end(&of.owner)
}

//export capi_offer_close
func capi_offer_close(h *C.gwipc_offer) { closeChild(unsafe.Pointer(h), kindOffer) }

//export capi_offer_publish
func capi_offer_publish(h *C.gwipc_offer, event C.uint16_t, data C.capi_cbytes, n C.size_t, waitUsec C.int64_t) C.int {
	return check(nil, func() error {
		b, w, err := payloadWait(data, n, waitUsec)
		if err != nil {
			return err
		}
		return offerFn(h, func(of *offer) error {
			if w.none() {
				return of.o.Publish(uint16(event), b)
			}
			ctx, cancel := w.context()
			defer cancel()
			return of.o.PublishWait(ctx, uint16(event), b)
		})
	})
}

//export capi_offer_loan
func capi_offer_loan(h *C.gwipc_offer, event C.uint16_t, waitUsec C.int64_t, loan *C.gwipc_loan) C.int {
	if loan != nil {
		*loan = C.gwipc_loan{}
	}
	return check(nil, func() error {
		if loan == nil {
			return errNull
		}
		w, err := timeoutOf(waitUsec)
		if err != nil {
			return err
		}
		return offerFn(h, func(of *offer) error {
			var l engine.Loan
			var err error
			if w.none() {
				l, err = of.o.Loan(uint16(event))
			} else {
				ctx, cancel := w.context()
				defer cancel()
				l, err = of.o.LoanWait(ctx, uint16(event))
			}
			if err != nil {
				return err
			}
			serial, err := addHandle(kindLoan, l)
			if err != nil {
				l.Discard()
				return err
			}
			buf := l.Bytes()
			*loan = C.gwipc_loan{struct_size: C.sizeof_gwipc_loan, event: event, data: dataPtr(buf),
				capacity: C.size_t(len(buf)), private_: stored(serial, kindLoan)}
			return nil
		})
	})
}

// errLoanDone is a loan used after it ended.
var errLoanDone = codeErr(C.GWIPC_E_LOAN_DONE, "loan already published or discarded")

// endLoan runs fn (Publish or Discard) on the loan, and forgets the loan's
// handle when fn ended it (keep reports the errors that leave it open).
func endLoan(loan *C.gwipc_loan, fn func(engine.Loan) error, keep func(error) bool) C.int {
	return check(nil, func() error {
		if loan == nil {
			return errNull
		}
		serial := uint64(loan.private_[0])
		return useConsumable(&loan.private_, kindLoan, errLoanDone, func(l engine.Loan) error {
			err := fn(l)
			if !keep(err) {
				registry.Close(serial, kindLoan, nil)
			}
			return err
		})
	})
}

//export capi_loan_publish
func capi_loan_publish(loan *C.gwipc_loan, n C.size_t) C.int {
	return endLoan(loan, func(l engine.Loan) error {
		if n > 1<<31-1 {
			return engine.ErrTooLarge
		}
		return l.Publish(int(n))
	}, func(err error) bool { return errors.Is(err, engine.ErrTooLarge) })
}

//export capi_loan_discard
func capi_loan_discard(loan *C.gwipc_loan) C.int {
	return endLoan(loan, engine.Loan.Discard, func(error) bool { return false })
}
