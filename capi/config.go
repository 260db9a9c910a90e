package main

/*
#include "capi.h"
*/
import "C"

import (
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/shm"
	"golang.org/x/sys/unix"
)

// config is a gwipc_config: the engine configuration being built and the
// callback registrations nodes made from it share.
type config struct {
	mu    sync.Mutex
	ec    engine.Config
	peer  *shared[peerFns]
	auth  *shared[authFns]
	log   *shared[logFns]
	logFd int // a duplicate of the log fd, -1 for none
	logLv slog.Level
}

// nodeResources is what a node takes from its config: a copy of the engine
// configuration, references on the callback registrations and its own
// duplicate of the log fd.
type nodeResources struct {
	ec        engine.Config
	peer      *shared[peerFns]
	auth      *shared[authFns]
	logs      *logQueue // nil without a log callback
	logFile   *os.File
	logFileLv slog.Level
}

// resources copies what a new node needs.
func (c *config) resources() nodeResources {
	c.mu.Lock()
	defer c.mu.Unlock()
	ec := c.ec
	ec.AllowUIDs = slices.Clone(ec.AllowUIDs)
	ec.AllowGIDs = slices.Clone(ec.AllowGIDs)
	ec.ListenerUIDs = slices.Clone(ec.ListenerUIDs)
	ec.Pools = slices.Clone(ec.Pools)
	ec.Policy = slices.Clone(ec.Policy)
	r := nodeResources{ec: ec, peer: c.peer.retain(), auth: c.auth.retain(), logFileLv: c.logLv}
	if c.log != nil && c.log.fns.cb != nil {
		r.logs = newLogQueue(c.log.retain())
	}
	if c.logFd >= 0 {
		if fd, err := dup(c.logFd); err == nil { // else the node logs nowhere
			r.logFile = os.NewFile(uintptr(fd), "gwipc-log")
		}
	}
	return r
}

// release lets go of what resources took.
func (r *nodeResources) release() {
	r.peer.release()
	r.auth.release()
	if r.logs != nil {
		r.logs.sink.release()
	}
	if r.logFile != nil {
		r.logFile.Close()
	}
}

// free ends the config's own references (its handle is closed).
func (c *config) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peer.release()
	c.auth.release()
	c.log.release()
	c.peer, c.auth, c.log = nil, nil, nil
	c.setLogFd(-1)
}

// setLogFd replaces the config's duplicate of the log fd.
func (c *config) setLogFd(fd int) {
	if c.logFd >= 0 {
		unix.Close(c.logFd)
	}
	c.logFd = fd
}

// dup duplicates fd (close-on-exec).
func dup(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// errRange is a setter's argument out of range.
var errRange = codeErr(C.GWIPC_E_INVAL, "argument out of range")

// setConfig is the frame of every setter: fn runs with the config locked.
func setConfig(h *C.gwipc_config, fn func(*config) error) C.int {
	return check(nil, func() error {
		return use(unsafe.Pointer(h), kindConfig, func(c *config) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			return fn(c)
		})
	})
}

//export capi_config_new
func capi_config_new(out **C.gwipc_config) C.int {
	if out != nil {
		*out = nil
	}
	return check(nil, func() error {
		if out == nil {
			return errNull
		}
		serial, err := addHandle(kindConfig, &config{logFd: -1})
		if err != nil {
			return err
		}
		*out = (*C.gwipc_config)(registry.Pointer(serial))
		return nil
	})
}

//export capi_config_free
func capi_config_free(h *C.gwipc_config) {
	serial := handleSerial(unsafe.Pointer(h))
	runVoid(func() {
		// The references go once no setter or node creation uses it.
		registry.Close(serial, kindConfig, func(obj any) { obj.(*config).free() })
	})
}

//export capi_config_set_name
func capi_config_set_name(h *C.gwipc_config, name C.capi_cstr) C.int {
	return setConfig(h, func(c *config) error {
		s, err := goString(name, "name")
		if err != nil {
			return err
		}
		if len(s) > 64 {
			return errRange
		}
		c.ec.Name = s
		return nil
	})
}

//export capi_config_set_socket_mode
func capi_config_set_socket_mode(h *C.gwipc_config, mode C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		m, err := fileMode(mode)
		if err != nil {
			return err
		}
		c.ec.SocketMode = m
		return nil
	})
}

// fileMode checks a socket file mode: permission bits only.
func fileMode(mode C.uint32_t) (os.FileMode, error) {
	if mode&^0o777 != 0 {
		return 0, errRange
	}
	return os.FileMode(mode), nil
}

//export capi_config_set_max_packet
func capi_config_set_max_packet(h *C.gwipc_config, bytes C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		if bytes < 4096 || bytes > 65536 {
			return errRange
		}
		c.ec.MaxPacket = int(bytes)
		return nil
	})
}

//export capi_config_set_handshake_timeout
func capi_config_set_handshake_timeout(h *C.gwipc_config, usec C.int64_t) C.int {
	return setConfig(h, func(c *config) error {
		d, err := duration(usec)
		if err != nil {
			return err
		}
		c.ec.HandshakeTimeout = d
		return nil
	})
}

//export capi_config_set_reconnect
func capi_config_set_reconnect(h *C.gwipc_config, minUsec, maxUsec C.int64_t) C.int {
	return setConfig(h, func(c *config) error {
		lo, err := duration(minUsec)
		if err != nil {
			return err
		}
		hi, err := duration(maxUsec)
		if err != nil {
			return err
		}
		if hi < lo {
			return errRange
		}
		c.ec.ReconnectMin, c.ec.ReconnectMax = lo, hi
		return nil
	})
}

//export capi_config_set_spin
func capi_config_set_spin(h *C.gwipc_config, usec C.int64_t) C.int {
	return setConfig(h, func(c *config) error {
		d, err := duration(usec)
		if err != nil || d > time.Second {
			return errRange
		}
		c.ec.Spin = d
		return nil
	})
}

//export capi_config_set_rings
func capi_config_set_rings(h *C.gwipc_config, entries C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		if entries == 0 {
			c.ec.DisableRings, c.ec.RingEntries = true, 0
			return nil
		}
		if entries < 64 || entries > 65536 || entries&(entries-1) != 0 {
			return errRange
		}
		c.ec.DisableRings, c.ec.RingEntries = false, int(entries)
		return nil
	})
}

//export capi_config_set_max_output
func capi_config_set_max_output(h *C.gwipc_config, bytes C.uint64_t) C.int {
	return setConfig(h, func(c *config) error {
		if uint64(bytes) > math.MaxInt {
			return errRange
		}
		c.ec.MaxOutput = int(bytes)
		return nil
	})
}

//export capi_config_set_max_peers
func capi_config_set_max_peers(h *C.gwipc_config, peers, handshakes C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		if peers > math.MaxInt32 || handshakes > math.MaxInt32 {
			return errRange
		}
		c.ec.MaxPeers, c.ec.MaxHandshakes = int(peers), int(handshakes)
		return nil
	})
}

//export capi_config_set_limits
func capi_config_set_limits(h *C.gwipc_config, limits C.capi_climits) C.int {
	return setConfig(h, func(c *config) error {
		if limits == nil || limits.struct_size != C.sizeof_gwipc_limits {
			return errNull
		}
		if limits.pool_bytes > math.MaxInt64 || limits.mapped_bytes > math.MaxInt64 {
			return errRange
		}
		c.ec.Limits = engine.Limits{
			Services:      int(limits.services),
			Subscriptions: int(limits.subscriptions),
			PendingCalls:  int(limits.pending_calls),
			FindElements:  int(limits.find_elements),
			PoolSlots:     int(limits.pool_slots),
			PoolBytes:     int64(limits.pool_bytes),
			MappedBytes:   int64(limits.mapped_bytes),
		}
		return nil
	})
}

//export capi_config_add_pool
func capi_config_add_pool(h *C.gwipc_config, service, instance C.capi_cstr, kind C.int, g C.gwipc_geometry) C.int {
	return setConfig(h, func(c *config) error {
		id, err := goString(service, "service")
		if err != nil {
			return err
		}
		if kind != C.GWIPC_REPLY_POOL && kind != C.GWIPC_CALL_POOL {
			return errRange
		}
		geo := geometry(g)
		if geo.Validate() != nil {
			return errRange
		}
		c.ec.Pools = append(c.ec.Pools, engine.PoolConfig{ServiceID: id, Instance: optString(instance),
			Kind: engine.PoolKind(kind), Geometry: geo})
		return nil
	})
}

// geometry converts a pool layout.
func geometry(g C.gwipc_geometry) shm.Geometry {
	return shm.Geometry{SlotSize: uint32(g.slot_size), SlotCount: uint32(g.slot_count)}
}

//export capi_config_allow_uid
func capi_config_allow_uid(h *C.gwipc_config, uid C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		c.ec.AllowUIDs = append(c.ec.AllowUIDs, uint32(uid))
		return nil
	})
}

//export capi_config_allow_gid
func capi_config_allow_gid(h *C.gwipc_config, gid C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		c.ec.AllowGIDs = append(c.ec.AllowGIDs, uint32(gid))
		return nil
	})
}

//export capi_config_require_listener_uid
func capi_config_require_listener_uid(h *C.gwipc_config, uid C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		c.ec.ListenerUIDs = append(c.ec.ListenerUIDs, uint32(uid))
		return nil
	})
}

//export capi_config_add_rule
func capi_config_add_rule(h *C.gwipc_config, rule C.capi_crule) C.int {
	return setConfig(h, func(c *config) error {
		if rule == nil || rule.struct_size != C.sizeof_gwipc_rule {
			return errNull
		}
		if rule.actions&^C.GWIPC_ACTION_ALL != 0 {
			return errRange
		}
		uids, err := ids(rule.uids, rule.n_uids)
		if err != nil {
			return err
		}
		gids, err := ids(rule.gids, rule.n_gids)
		if err != nil {
			return err
		}
		c.ec.Policy = append(c.ec.Policy, engine.Rule{Service: optString(rule.service), Instance: optString(rule.instance),
			Actions: engine.Action(rule.actions), UIDs: uids, GIDs: gids, Deny: rule.deny != 0})
		return nil
	})
}

// ids copies a rule's uid or gid list.
func ids(p *C.uint32_t, n C.size_t) ([]uint32, error) {
	switch {
	case n == 0:
		return nil, nil
	case p == nil || n > 1<<20:
		return nil, errRange
	}
	return slices.Clone(unsafe.Slice((*uint32)(unsafe.Pointer(p)), int(n))), nil
}

//export capi_config_set_peer_callbacks
func capi_config_set_peer_callbacks(h *C.gwipc_config, connected C.gwipc_peer_cb, gone C.gwipc_peer_gone_cb,
	userdata unsafe.Pointer, destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return setConfig(h, func(c *config) error {
		c.peer.release()
		c.peer = newShared(peerFns{connected: connected, gone: gone}, ud, destroy)
		return nil
	})
}

//export capi_config_set_authorize
func capi_config_set_authorize(h *C.gwipc_config, cb C.gwipc_authorize_cb, userdata unsafe.Pointer,
	destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return setConfig(h, func(c *config) error {
		c.auth.release()
		c.auth = newShared(authFns{cb: cb}, ud, destroy)
		return nil
	})
}

// levelOf checks a minimum log level.
func levelOf(level C.int) (slog.Level, error) {
	if level < C.GWIPC_LOG_DEBUG || level > C.GWIPC_LOG_ERROR {
		return 0, errRange
	}
	return slog.Level(level), nil
}

//export capi_config_set_log_callback
func capi_config_set_log_callback(h *C.gwipc_config, minLevel C.int, cb C.gwipc_log_cb, userdata unsafe.Pointer,
	destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return setConfig(h, func(c *config) error {
		lv, err := levelOf(minLevel)
		if err != nil {
			return err
		}
		c.log.release()
		c.log = newShared(logFns{cb: cb, level: lv}, ud, destroy)
		return nil
	})
}

//export capi_config_set_log_fd
func capi_config_set_log_fd(h *C.gwipc_config, fd C.int, minLevel C.int) C.int {
	return setConfig(h, func(c *config) error {
		lv, err := levelOf(minLevel)
		if err != nil {
			return err
		}
		if fd == -1 {
			c.setLogFd(-1)
			return nil
		}
		if fd < 0 {
			return errRange
		}
		d, err := dup(int(fd))
		if err != nil {
			return codeErr(C.GWIPC_E_INVAL, "log fd: "+err.Error())
		}
		c.setLogFd(d)
		c.logLv = lv
		return nil
	})
}

//export capi_config_set_status_path
func capi_config_set_status_path(h *C.gwipc_config, path C.capi_cstr, mode C.uint32_t) C.int {
	return setConfig(h, func(c *config) error {
		m, err := fileMode(mode)
		if err != nil {
			return err
		}
		c.ec.StatusPath, c.ec.StatusMode = optString(path), m
		return nil
	})
}
