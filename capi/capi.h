/* capi.h - private to the cgo layer: included by every cgo preamble of
 * capi/ and by its .c files, after include/gwipc.h. Nothing here is part of
 * the API; no name here starts with gwipc_, so the version script keeps it
 * out of the library's exports.
 *
 * Callbacks are C function pointers, which cgo cannot call: the static
 * inline trampolines below call them. Every struct a callback receives is
 * built here, on the C stack, from plain arguments, so no Go pointer is ever
 * stored in C memory. Userdata travels as uintptr_t: it is the caller's
 * opaque value (often not an address), never held in a Go pointer. */
#ifndef CAPI_H
#define CAPI_H

#include <stdint.h>
#include <stdlib.h>

#include "gwipc.h"

/* cgo drops const from pointer parameters; these typedefs keep the exported
 * prototypes identical to the header's. */
typedef const char *capi_cstr;
typedef const void *capi_cbytes;
typedef const gwipc_service_id *capi_csvc;
typedef const gwipc_config *capi_cconfig;
typedef const gwipc_limits *capi_climits;
typedef const gwipc_rule *capi_crule;
typedef const gwipc_offer_params *capi_coffer_params;
typedef const gwipc_proxy_params *capi_cproxy_params;
typedef const gwipc_call *capi_ccall;
typedef const gwipc_sample *capi_csample;
typedef const gwipc_reply *capi_creply;

/* Set by fork.c in a forked child. */
extern int capi_forked_flag;

/* Fills *e as far as e->struct_size reaches (errors.c); the message is
 * copied, truncated to fit. */
void capi_set_error(gwipc_error *e, int code, int32_t app_code, uint16_t status, int32_t sys_errno,
		    const char *msg, size_t len);

/* Fills *e (NULL ok) with GWIPC_E_FORKED (errors.c; no Go involved). */
void capi_forked_error(gwipc_error *e);

/* An error as plain values, for callbacks that receive a gwipc_error. */
typedef struct capi_err {
	int code;
	int32_t app_code;
	uint16_t status;
	int32_t sys_errno;
} capi_err;

static inline void capi_destroy(gwipc_destroy_cb fn, uintptr_t ud) {
	if (fn)
		fn((void *)ud);
}

static inline void capi_post(gwipc_post_cb fn, uintptr_t ud) { fn((void *)ud); }

static inline gwipc_peer_info capi_peer_info(gwipc_peer_id id, int32_t pid, uint32_t uid, uint32_t gid,
					     const char *name) {
	gwipc_peer_info p = {sizeof p, id, pid, uid, gid, name};
	return p;
}

static inline void capi_peer(gwipc_peer_cb fn, uintptr_t ud, gwipc_node *node, gwipc_peer_id id, int32_t pid,
			     uint32_t uid, uint32_t gid, const char *name) {
	gwipc_peer_info p = capi_peer_info(id, pid, uid, gid, name);
	fn((void *)ud, node, &p);
}

/* why_msg NULL: an orderly departure (why is NULL). */
static inline void capi_peer_gone(gwipc_peer_gone_cb fn, uintptr_t ud, gwipc_node *node, gwipc_peer_id id,
				  int32_t pid, uint32_t uid, uint32_t gid, const char *name, capi_err why,
				  const char *why_msg, size_t why_len) {
	gwipc_peer_info p = capi_peer_info(id, pid, uid, gid, name);
	gwipc_error e = GWIPC_ERROR_INIT;
	if (why_msg)
		capi_set_error(&e, why.code, why.app_code, why.status, why.sys_errno, why_msg, why_len);
	fn((void *)ud, node, &p, why_msg ? &e : NULL);
}

static inline int capi_authorize(gwipc_authorize_cb fn, uintptr_t ud, int32_t pid, uint32_t uid, uint32_t gid,
				 const char *name, char *reason, size_t reason_cap) {
	gwipc_peer_info p = capi_peer_info(0, pid, uid, gid, name);
	return fn((void *)ud, &p, reason, reason_cap);
}

static inline void capi_log(gwipc_log_cb fn, uintptr_t ud, int level, const char *line) {
	fn((void *)ud, level, line);
}

static inline int capi_command(gwipc_command_cb fn, uintptr_t ud, const void *req, size_t len, gwipc_writer *w) {
	return fn((void *)ud, req, len, w);
}

static inline void capi_subscribers(gwipc_subscribers_cb fn, uintptr_t ud, gwipc_offer *offer, uint16_t event,
				    int subscribed) {
	fn((void *)ud, offer, event, subscribed);
}

static inline void capi_call(gwipc_call_cb fn, uintptr_t ud, gwipc_offer *offer, uint16_t method, uint8_t ff,
			     gwipc_peer_id peer, const void *data, size_t len, uint64_t p0, uint64_t p1) {
	gwipc_call c = {sizeof c, method, ff, 0, peer, data, len, {p0, p1}};
	fn((void *)ud, offer, &c);
}

static inline void capi_update_request(gwipc_update_request_cb fn, uintptr_t ud, gwipc_offer *offer,
				       uint16_t event) {
	fn((void *)ud, offer, event);
}

static inline void capi_availability(gwipc_availability_cb fn, uintptr_t ud, gwipc_proxy *proxy, int available) {
	fn((void *)ud, proxy, available);
}

static inline void capi_suback(gwipc_suback_cb fn, uintptr_t ud, gwipc_proxy *proxy, uint16_t event, int status) {
	fn((void *)ud, proxy, event, status);
}

static inline void capi_sample(gwipc_sample_cb fn, uintptr_t ud, gwipc_proxy *proxy, uint16_t event,
			       uint8_t requested, uint64_t seq, const void *data, size_t len, uint64_t p0,
			       uint64_t p1) {
	gwipc_sample s = {sizeof s, event, requested, 0, seq, data, len, {p0, p1}};
	fn((void *)ud, proxy, &s);
}

/* A completion: has_reply says whether reply is set, err_msg NULL whether
 * err is NULL. */
static inline void capi_completion(gwipc_reply_cb fn, uintptr_t ud, gwipc_proxy *proxy, gwipc_call_id id,
				   int has_reply, const void *data, size_t len, uint64_t p0, uint64_t p1, capi_err err,
				   const char *err_msg, size_t err_len) {
	gwipc_reply r = {sizeof r, 0, data, len, {p0, p1}};
	gwipc_error e = GWIPC_ERROR_INIT;
	if (err_msg)
		capi_set_error(&e, err.code, err.app_code, err.status, err.sys_errno, err_msg, err_len);
	fn((void *)ud, proxy, id, has_reply ? &r : NULL, err_msg ? &e : NULL);
}

static inline void capi_find(gwipc_find_cb fn, uintptr_t ud, gwipc_finder *finder, const char *id, uint16_t major,
			     uint16_t minor, const char *instance, gwipc_peer_id peer, int available) {
	gwipc_find_event ev = {sizeof ev, {id, major, minor, instance}, peer, available};
	fn((void *)ud, finder, &ev);
}

#endif /* CAPI_H */
