package main

/*
#include "capi.h"
*/
import "C"

import (
	"errors"
	"log/slog"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// peerFns are the peer callbacks of gwipc_config_set_peer_callbacks.
type peerFns struct {
	connected C.gwipc_peer_cb
	gone      C.gwipc_peer_gone_cb
}

// authFns is the callback of gwipc_config_set_authorize.
type authFns struct {
	cb C.gwipc_authorize_cb
}

// peerRec is a connected peer as the capi tracks it: its name in C memory
// (for the callbacks' gwipc_peer_info) and its userdata.
type peerRec struct {
	name *C.char
	ud   C.uintptr_t
}

func (p *peerRec) free() { C.free(unsafe.Pointer(p.name)) }

// engineConfig is the node's engine configuration: the config's, with the
// capi's callbacks.
func (st *node) engineConfig() engine.Config {
	ec := st.res.ec
	ec.OnPeerConnected = st.peerConnected
	ec.OnPeerDisconnected = st.peerGone
	if st.res.auth != nil && st.res.auth.fns.cb != nil {
		ec.Authorize = st.authorize
	}
	var hs []slog.Handler
	if st.res.logs != nil {
		hs = append(hs, st.res.logs.handler())
	}
	if st.res.logFile != nil {
		hs = append(hs, slog.NewTextHandler(st.res.logFile, &slog.HandlerOptions{Level: st.res.logFileLv}))
	}
	if len(hs) > 0 {
		ec.Logger = slog.New(slog.NewMultiHandler(hs...))
	}
	return ec
}

// peerConnected tracks a new peer and calls on_connected.
func (st *node) peerConnected(p *engine.Peer) {
	rec := &peerRec{name: C.CString(p.Name())}
	st.mu.Lock()
	if st.finished {
		st.mu.Unlock()
		rec.free()
		return
	}
	st.peers[p.ID()] = rec
	st.mu.Unlock()
	if f := st.res.peer; f != nil && f.fns.connected != nil {
		C.capi_peer(f.fns.connected, f.ud, st.handle(), C.gwipc_peer_id(p.ID()), C.int32_t(p.PID()),
			C.uint32_t(p.UID()), C.uint32_t(p.GID()), rec.name)
	}
}

// peerGone calls on_disconnected and forgets the peer.
func (st *node) peerGone(p *engine.Peer, why error) {
	st.mu.Lock()
	rec := st.peers[p.ID()]
	delete(st.peers, p.ID())
	st.mu.Unlock()
	if rec == nil {
		return // connected before the capi knew it: cannot happen
	}
	defer rec.free()
	f := st.res.peer
	if f == nil || f.fns.gone == nil {
		return
	}
	var e C.capi_err
	var msg *C.char
	var n C.size_t
	if why != nil {
		e, msg, n = cErr(why)
		if e.code == C.GWIPC_E_INTERNAL {
			e.code = C.GWIPC_E_PEER_LOST // a protocol error: no code of its own
		}
	}
	C.capi_peer_gone(f.fns.gone, f.ud, st.handle(), C.gwipc_peer_id(p.ID()), C.int32_t(p.PID()),
		C.uint32_t(p.UID()), C.uint32_t(p.GID()), rec.name, e, msg, n)
}

// errRefused is why a peer the authorizer refused without a reason is
// rejected.
var errRefused = errors.New("refused by the authorizer")

// authorize asks the C authorizer about a connecting peer.
func (st *node) authorize(cred engine.PeerCred) error {
	f := st.res.auth
	name := C.CString(cred.Name)
	defer C.free(unsafe.Pointer(name))
	var reason [256]C.char
	if C.capi_authorize(f.fns.cb, f.ud, C.int32_t(cred.PID), C.uint32_t(cred.UID), C.uint32_t(cred.GID), name,
		&reason[0], C.size_t(len(reason))) == 0 {
		return nil
	}
	reason[len(reason)-1] = 0
	if s := C.GoString(&reason[0]); s != "" {
		return errors.New(s)
	}
	return errRefused
}

// withPeer runs fn with a connected peer of the node (GWIPC_E_NOTFOUND
// for any other).
func withPeer(h *C.gwipc_node, id C.gwipc_peer_id, fn func(*peerRec)) error {
	return nodeFn(h, func(st *node) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		rec := st.peers[uint64(id)]
		if rec == nil {
			return codeErr(C.GWIPC_E_NOTFOUND, "no such peer")
		}
		fn(rec)
		return nil
	})
}

//export capi_node_set_peer_userdata
func capi_node_set_peer_userdata(h *C.gwipc_node, id C.gwipc_peer_id, userdata unsafe.Pointer) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return check(nil, func() error { return withPeer(h, id, func(p *peerRec) { p.ud = ud }) })
}

//export capi_node_get_peer_userdata
func capi_node_get_peer_userdata(h *C.gwipc_node, id C.gwipc_peer_id, out *unsafe.Pointer) C.int {
	// Written as an integer: userdata need not be an address.
	dst := (*C.uintptr_t)(unsafe.Pointer(out))
	return check(nil, func() error {
		if dst == nil {
			return errNull
		}
		return withPeer(h, id, func(p *peerRec) { *dst = p.ud })
	})
}
