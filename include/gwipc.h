/*
 * gwipc.h - the C interface of gwipc, a local IPC library for Linux.
 *
 * gwipc implements a gateway IPC binding between processes on one machine:
 * service discovery (require / offer / find), events with per-event sequence
 * numbers, fields (events whose latest value is cached), and method calls,
 * over a Unix-domain control socket, with payloads in shared-memory slot
 * pools (never copied through the kernel). This header is the whole API:
 * anything not declared here is not part of it. The library is
 * libgwipc.so.1 (pkg-config: gwipc).
 *
 * ------------------------------------------------------------------------
 * Conventions that hold for every function
 * ------------------------------------------------------------------------
 *
 * Return values.  Functions returning int return GWIPC_OK (0) on success, a
 * count (>= 0) where documented, or a negative GWIPC_E_* code. Destructors
 * (*_close, *_free, *_release) return void and accept NULL. Constructors
 * write the new object through a trailing `**out` parameter and set *out to
 * NULL on failure. Initialise handle variables to NULL before passing their
 * address (gwipc_node *node = NULL;).
 *
 * Errors.  Every code is in GWIPC_ERRORS below; gwipc_strerror() gives its
 * text. Functions that can fail for reasons worth explaining (constructors,
 * calls, Simple-IPC) also take an optional `gwipc_error *err` (NULL allowed)
 * that receives the code and a message. Hot paths (publish, loan, dispatch,
 * release) return the bare code.
 *
 * Handles.  Objects (gwipc_node, gwipc_offer, ...) are opaque. Every handle
 * passed in is checked: NULL, a handle of the wrong kind, or one already
 * closed returns GWIPC_E_BADHANDLE (or GWIPC_E_INVAL for NULL); it never
 * crashes. Handle values are never reused, so a stale handle cannot alias a
 * newer object. Small per-message objects (samples, loans, received calls,
 * replies) are plain structs the caller stores; they carry a private id that
 * is checked the same way, so a stale or copied struct is refused, never
 * mistaken for a later one.
 *
 * Ownership, in every function comment:
 *   owned     - the caller must release it with the named function;
 *   borrowed  - valid until the named event; the caller never frees it;
 *   consumed  - the call takes it over, even on error; it is dead after.
 * Strings passed in are NUL-terminated UTF-8, copied, never retained.
 * Payloads are (const void *data, size_t len) and copied unless the function
 * says it is zero-copy. Memory the library returns (JSON, responses) is
 * owned: free it with gwipc_free().
 *
 * Time.  Durations are int64_t microseconds. For a wait (a timeout
 * argument), 0 means do not wait and GWIPC_FOREVER (-1) means no limit.
 * The durations a gwipc_config_set_* function takes are settings, not
 * waits: each says what 0 means, and none accepts GWIPC_FOREVER.
 *
 * ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------
 *
 * Every function may be called from any thread at any time, with these
 * rules:
 *  - A node is driven by one loop at a time: gwipc_node_dispatch(),
 *    gwipc_node_run() or the thread of gwipc_node_run_thread(). A second one
 *    gets GWIPC_E_BUSY.
 *  - Callbacks run only inside that loop, on its thread, one at a time:
 *    sample, call, availability, subscription, completion, find, peer,
 *    authorize, log, command, posted and destroy callbacks alike. No
 *    callback runs while a lock of the library is held, so a callback may
 *    call any function, except: dispatching the same node (GWIPC_E_BUSY),
 *    and blocking calls on the same node - gwipc_proxy_call, a publish or
 *    loan with a wait, gwipc_node_shutdown - which return GWIPC_E_DEADLOCK.
 *  - Closing any object from another thread waits for a callback of it in
 *    progress; once the close returns, no callback of that object runs.
 *    Closing an object from one of its own callbacks is allowed: it returns
 *    at once and that callback is the last.
 *  - Every registration takes (callback, userdata, destroy). destroy, if
 *    not NULL, runs exactly once per registration, after its last callback
 *    (inside a dispatch, or inside the close that ended it): the place to
 *    free userdata.
 *
 * ------------------------------------------------------------------------
 * Process rules
 * ------------------------------------------------------------------------
 *
 *  - The library contains a Go runtime, which starts when the library is
 *    loaded. One Go runtime per process: do not load libgwipc into a Go
 *    program, or next to another Go-built shared library.
 *  - No fork() without exec() once the library is loaded: the child has one
 *    thread and a broken runtime. Every call that would enter the runtime
 *    returns GWIPC_E_FORKED in a forked child (the plain C functions
 *    gwipc_strerror, gwipc_error_name, gwipc_version, gwipc_version_number
 *    and gwipc_free still
 *    work). Daemonise before loading the library (or before
 *    dlopen()); Python: use the "spawn" or "forkserver" start methods.
 *  - dlclose() never unloads the library.
 *  - gwipc installs no signal handler of its own (the Go runtime handles
 *    SIGSEGV, SIGBUS, SIGFPE, SIGPIPE and SIGURG for its own threads). A host
 *    that installs signal handlers must set SA_ONSTACK on them. A host that
 *    blocks signals to read them with signalfd() or sigwait() must block
 *    them before the library is loaded.
 *  - The library never exits the process and never writes to stderr unless
 *    told to (gwipc_config_set_log_fd).
 *  - Linux with glibc only.
 */
#ifndef GWIPC_H
#define GWIPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GWIPC_API __attribute__((visibility("default")))
#define GWIPC_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#define GWIPC_API
#define GWIPC_DEPRECATED(msg)
#endif

/* ======================================================================
 * Versions
 * ====================================================================== */

#define GWIPC_VERSION_MAJOR 0
#define GWIPC_VERSION_MINOR 2
#define GWIPC_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define GWIPC_VERSION_NUMBER \
    (GWIPC_VERSION_MAJOR * 10000 + GWIPC_VERSION_MINOR * 100 + GWIPC_VERSION_PATCH)
#define GWIPC_VERSION_STRING "0.2.0"
/* True when the header is at least version x.y.z. */
#define GWIPC_AT_LEAST_VERSION(x, y, z) \
    (GWIPC_VERSION_NUMBER >= ((x) * 10000 + (y) * 100 + (z)))

/* The library's version as GWIPC_VERSION_NUMBER computes it; compare with
 * the header's macro to catch a mismatch. Any thread. Since 0.2. */
GWIPC_API unsigned gwipc_version_number(void);

/* The library's version, "MAJOR.MINOR.PATCH" (static storage). Since 0.2. */
GWIPC_API const char *gwipc_version(void);

/* ======================================================================
 * Errors
 * ====================================================================== */

/* X(name, value, text): every code, with its value (never renumbered, never
 * reused) and its text. */
#define GWIPC_ERRORS(X)                                                                        \
    X(GWIPC_OK, 0, "success")                                                                  \
    X(GWIPC_E_INVAL, -1, "invalid argument")                                                   \
    X(GWIPC_E_BADHANDLE, -2, "stale, closed or wrong kind of handle")                          \
    X(GWIPC_E_NOMEM, -3, "out of memory")                                                      \
    X(GWIPC_E_CLOSED, -4, "object closed")                                                     \
    X(GWIPC_E_BUSY, -5, "the node is dispatched by another loop")                              \
    X(GWIPC_E_DEADLOCK, -6, "blocking call from a callback of the same node")                  \
    X(GWIPC_E_FORKED, -7, "called in a forked child")                                          \
    X(GWIPC_E_INVALID_SERVICE, -8, "invalid service or instance id")                           \
    X(GWIPC_E_DUPLICATE, -9, "already offered, required or registered")                        \
    X(GWIPC_E_UNKNOWN_EVENT, -10, "unknown event id")                                          \
    X(GWIPC_E_UNKNOWN_METHOD, -11, "unknown method id")                                        \
    X(GWIPC_E_NOSLOT, -12, "no free slot in the pool")                                         \
    X(GWIPC_E_TOO_LARGE, -13, "payload larger than a slot")                                    \
    X(GWIPC_E_LOAN_DONE, -14, "loan already published or discarded")                           \
    X(GWIPC_E_NOT_AVAILABLE, -15, "service not available")                                     \
    X(GWIPC_E_INVALID_CONFIG, -16, "invalid configuration")                                    \
    X(GWIPC_E_UNSUPPORTED, -17, "not supported by the peer")                                   \
    X(GWIPC_E_TIMEOUT, -18, "timed out")                                                       \
    X(GWIPC_E_CANCELLED, -19, "call cancelled")                                                \
    X(GWIPC_E_CALL_DONE, -20, "call already answered")                                         \
    X(GWIPC_E_PERMISSION, -21, "permission denied")                                            \
    X(GWIPC_E_QUOTA, -22, "quota exceeded")                                                    \
    X(GWIPC_E_APP, -23, "the provider returned an application error")                          \
    X(GWIPC_E_REFUSED, -24, "refused by the peer")                                             \
    X(GWIPC_E_NOSPACE, -25, "buffer too small")                                                \
    X(GWIPC_E_NOTFOUND, -26, "no such subscription, call or peer")                             \
    X(GWIPC_E_OS, -27, "system call failed")                                                   \
    X(GWIPC_E_INTERNAL, -28, "internal error")                                                 \
    X(GWIPC_E_PEER_LOST, -29, "peer lost")                                                     \
    X(GWIPC_E_SIPC_PROTOCOL, -40, "Simple-IPC protocol error")                                 \
    X(GWIPC_E_SIPC_TRUNCATED, -41, "Simple-IPC response truncated")                            \
    X(GWIPC_E_SIPC_CONNECT, -42, "no Simple-IPC server answers at the path")

#define GWIPC_ERROR_ENUM_(name, value, text) name = value,
/* Error codes; see GWIPC_ERRORS. */
enum gwipc_errcode { GWIPC_ERRORS(GWIPC_ERROR_ENUM_) };
#undef GWIPC_ERROR_ENUM_

/* Static text for any code (also codes this header does not know); never
 * NULL. Any thread. Since 0.2. */
GWIPC_API const char *gwipc_strerror(int code);

/* The code's name ("GWIPC_E_NOSLOT"), or "GWIPC_E_UNKNOWN" (static
 * storage). Any thread. Since 0.2. */
GWIPC_API const char *gwipc_error_name(int code);

/* Details of a failure, filled by functions taking a gwipc_error *. The
 * caller owns the struct (no free needed); set struct_size with
 * GWIPC_ERROR_INIT. On success code is GWIPC_OK and message is empty. */
typedef struct gwipc_error {
    uint32_t struct_size; /* sizeof(gwipc_error), for growth */
    int32_t code;         /* GWIPC_E_* */
    int32_t app_code;     /* GWIPC_E_APP: the provider's application error code */
    uint16_t status;      /* GWIPC_E_REFUSED (and others from the peer): its wire status code */
    uint16_t reserved_;
    int32_t sys_errno;    /* GWIPC_E_OS: errno */
    char message[256];    /* NUL-terminated explanation, possibly truncated */
} gwipc_error;
#define GWIPC_ERROR_INIT {sizeof(gwipc_error), 0, 0, 0, 0, 0, {0}}

/* Frees memory the library returned as owned (status JSON, responses).
 * NULL is ignored. Any thread. Since 0.2. */
GWIPC_API void gwipc_free(void *p);

/* ======================================================================
 * Common types
 * ====================================================================== */

#define GWIPC_FOREVER (-1)

typedef struct gwipc_config gwipc_config;
typedef struct gwipc_node gwipc_node;
typedef struct gwipc_offer gwipc_offer;
typedef struct gwipc_proxy gwipc_proxy;
typedef struct gwipc_finder gwipc_finder;
typedef struct gwipc_writer gwipc_writer;

/* Peer ids are unique among the peers a node has had, never reused. */
typedef uint64_t gwipc_peer_id;
/* Ids of calls made with gwipc_proxy_call_async, unique per node. */
typedef uint64_t gwipc_call_id;

/* Runs once per registration, after its last callback (see Threads). */
typedef void (*gwipc_destroy_cb)(void *userdata);

/* A service instance: interface id, version and instance id. Input only,
 * borrowed for the call. Ids are 1 to 64 bytes of printable UTF-8 without
 * spaces; the instance "*" is reserved (it means any instance to find). */
typedef struct gwipc_service_id {
    const char *id;
    uint16_t major; /* incompatible changes */
    uint16_t minor; /* compatible additions */
    const char *instance;
} gwipc_service_id;

/* A pool layout: slot_count slots of slot_size bytes. {0, 0}: the default. */
typedef struct gwipc_geometry {
    uint32_t slot_size;
    uint32_t slot_count;
} gwipc_geometry;

/* A connected peer, borrowed for the duration of the callback. */
typedef struct gwipc_peer_info {
    uint32_t struct_size;
    gwipc_peer_id id;
    int32_t pid; /* kernel-verified credentials (SO_PEERCRED) */
    uint32_t uid;
    uint32_t gid;
    const char *name; /* the name it gave in its handshake; NUL-terminated */
} gwipc_peer_info;

/* Reports whether svc can be offered or required: GWIPC_OK or
 * GWIPC_E_INVALID_SERVICE / GWIPC_E_INVAL (NULL). Any thread. Since 0.2. */
GWIPC_API int gwipc_service_validate(const gwipc_service_id *svc);

/* 1 if a consumer wanting `wanted` can use the offer `offered` (same id,
 * major and instance, wanted minor <= offered minor), 0 if not, <0 for bad
 * arguments. Any thread. Since 0.2. */
GWIPC_API int gwipc_service_compatible(const gwipc_service_id *offered, const gwipc_service_id *wanted);

/* ======================================================================
 * Node configuration: an opaque builder
 * ====================================================================== */

/* Log levels (those of Go's log/slog). */
enum gwipc_log_level {
    GWIPC_LOG_DEBUG = -4,
    GWIPC_LOG_INFO = 0,
    GWIPC_LOG_WARN = 4,
    GWIPC_LOG_ERROR = 8
};

/* Peer callbacks. why is NULL for an orderly departure (the peer said
 * goodbye), else it says why: GWIPC_E_PEER_LOST for a crash or a kill, a
 * protocol error, a rejection. Both borrowed for the callback. */
typedef void (*gwipc_peer_cb)(void *userdata, gwipc_node *node, const gwipc_peer_info *peer);
typedef void (*gwipc_peer_gone_cb)(void *userdata, gwipc_node *node, const gwipc_peer_info *peer,
                                   const gwipc_error *why);

/* Asked about every connecting peer the allow-lists admit (listener only).
 * Return 0 to admit it; anything else refuses it, with the NUL-terminated
 * text written to reason (reason_cap bytes available) sent to the peer.
 * Runs inside dispatch; the peer waits for it, so do not block. */
typedef int (*gwipc_authorize_cb)(void *userdata, const gwipc_peer_info *peer, char *reason,
                                  size_t reason_cap);

/* A log record: level and one line of text (borrowed for the callback).
 * Records reach the callback inside a dispatch of the node, on its thread. */
typedef void (*gwipc_log_cb)(void *userdata, int level, const char *line);

/* Limits on what one peer may make the node hold; 0 fields take the
 * defaults (in parentheses). Input only. */
typedef struct gwipc_limits {
    uint32_t struct_size;   /* sizeof(gwipc_limits) */
    uint32_t services;      /* services a peer may request or bind (1024) */
    uint32_t subscriptions; /* event subscriptions of a peer (4096) */
    uint32_t pending_calls; /* calls of a peer not finished, fire-and-forget included (1024) */
    uint32_t find_elements; /* find watches of a peer (256) */
    uint32_t pool_slots;    /* slots of one pool a peer sizes or sends (4096) */
    uint64_t pool_bytes;    /* bytes of one such pool (64 MiB) */
    uint64_t mapped_bytes;  /* bytes of a peer's pools mapped at once (256 MiB) */
} gwipc_limits;
#define GWIPC_LIMITS_INIT {sizeof(gwipc_limits), 0, 0, 0, 0, 0, 0, 0}

/* Actions for access rules, combinable. */
enum gwipc_action {
    GWIPC_ACTION_OFFER = 1,     /* offer the service to this node (checked by a consumer) */
    GWIPC_ACTION_REQUIRE = 2,   /* bind to this node's offer */
    GWIPC_ACTION_SUBSCRIBE = 4, /* subscribe to this node's events */
    GWIPC_ACTION_CALL = 8,      /* call this node's methods */
    GWIPC_ACTION_ALL = 15
};

/* An access rule. Rules are checked in the order added; the first that
 * matches decides; none matches: allowed. Input only, copied. */
typedef struct gwipc_rule {
    uint32_t struct_size;  /* sizeof(gwipc_rule) */
    const char *service;   /* interface id; NULL, "" or "*": any */
    const char *instance;  /* NULL, "" or "*": any */
    uint32_t actions;      /* GWIPC_ACTION_* mask; 0: all */
    const uint32_t *uids;  /* the rule applies to peers with one of these uids ... */
    size_t n_uids;
    const uint32_t *gids;  /* ... or one of these gids; both empty: every peer */
    size_t n_gids;
    int deny;              /* non-zero: refuse (else allow) */
} gwipc_rule;
#define GWIPC_RULE_INIT {sizeof(gwipc_rule), NULL, NULL, 0, NULL, 0, NULL, 0, 0}

/* Pools a dialler may size in its handshake (for pools the listener creates
 * for this dialler alone). */
enum gwipc_pool_kind {
    GWIPC_REPLY_POOL = 0, /* the listener's pool for method replies to this dialler */
    GWIPC_CALL_POOL = 1   /* the listener's pool for calls to this dialler's offers */
};

/* Creates an empty configuration (all defaults). *out is owned: free it with
 * gwipc_config_free. A node copies what it needs, so the config may be
 * freed (or changed for another node) once the node exists. Returns
 * GWIPC_OK or GWIPC_E_INVAL. Since 0.2. */
GWIPC_API int gwipc_config_new(gwipc_config **out);

/* Frees the configuration. The callbacks it holds stay registered with the
 * nodes made from it; each destroy runs once, after the config is freed and
 * every such node closed. NULL ok. Since 0.2. */
GWIPC_API void gwipc_config_free(gwipc_config *cfg);

/* The setters below return GWIPC_OK, GWIPC_E_INVAL (NULL or out-of-range
 * argument) or GWIPC_E_BADHANDLE. Values are checked again, together, when
 * the node is created (GWIPC_E_INVALID_CONFIG there). Since 0.2. */

/* The name sent to peers (at most 64 bytes). */
GWIPC_API int gwipc_config_set_name(gwipc_config *cfg, const char *name);
/* The listener socket's file mode (default 0600; permission bits only). */
GWIPC_API int gwipc_config_set_socket_mode(gwipc_config *cfg, uint32_t mode);
/* The largest control packet accepted, in [4096, 65536] (default 65536). */
GWIPC_API int gwipc_config_set_max_packet(gwipc_config *cfg, uint32_t bytes);
/* The handshake deadline (default 5 s; 0: the default). A handshake must
 * end: GWIPC_FOREVER is GWIPC_E_INVAL. */
GWIPC_API int gwipc_config_set_handshake_timeout(gwipc_config *cfg, int64_t usec);
/* A dialler's reconnect back-off bounds (defaults 10 ms and 2 s; 0: the
 * default); GWIPC_E_INVAL if max_usec < min_usec or either is negative. */
GWIPC_API int gwipc_config_set_reconnect(gwipc_config *cfg, int64_t min_usec, int64_t max_usec);
/* Bytes queued for a peer that does not read before it is dropped (4 MiB). */
GWIPC_API int gwipc_config_set_max_output(gwipc_config *cfg, uint64_t bytes);
/* How long a dispatch with nothing to do polls the shared-memory rings
 * before it sleeps (default 0: never; at most 1 s). A peer's next message
 * then costs no wake-up: sub-microsecond hand-offs for a CPU spent spinning.
 * The spin adapts (it shrinks while it finds nothing), and a node never
 * spins when it and its ring peers can run only on one and the same CPU.
 * Returns GWIPC_OK or GWIPC_E_INVAL. Since 0.2. */
GWIPC_API int gwipc_config_set_spin(gwipc_config *cfg, int64_t usec);
/* The shared-memory rings: entries (of 32 bytes) in each ring this node
 * writes, a power of two in [64, 65536] (default 4096); 0 turns rings off,
 * so that every message goes through the socket. Returns GWIPC_OK or
 * GWIPC_E_INVAL. Since 0.2. */
GWIPC_API int gwipc_config_set_rings(gwipc_config *cfg, uint32_t entries);
/* A listener's peer limit (1024) and handshakes in progress (64). */
GWIPC_API int gwipc_config_set_max_peers(gwipc_config *cfg, uint32_t peers, uint32_t handshakes);
/* The per-peer limits; limits->struct_size must be set. */
GWIPC_API int gwipc_config_set_limits(gwipc_config *cfg, const gwipc_limits *limits);
/* Dialler: size a pool the listener creates for this dialler (service id,
 * instance NULL or "" for every instance). */
GWIPC_API int gwipc_config_add_pool(gwipc_config *cfg, const char *service, const char *instance,
                                    int kind, gwipc_geometry geometry);
/* Listener: admit peers with this uid or gid (adds to the allow-lists; both
 * empty: anyone who can open the socket). */
GWIPC_API int gwipc_config_allow_uid(gwipc_config *cfg, uint32_t uid);
GWIPC_API int gwipc_config_allow_gid(gwipc_config *cfg, uint32_t gid);
/* Dialler: refuse a listener not running as one of these uids (judged by
 * the credentials of the process that created the listening socket). */
GWIPC_API int gwipc_config_require_listener_uid(gwipc_config *cfg, uint32_t uid);
/* Appends an access rule; rule->struct_size must be set. */
GWIPC_API int gwipc_config_add_rule(gwipc_config *cfg, const gwipc_rule *rule);
/* Peer callbacks (either may be NULL). Replaces earlier ones (whose destroy
 * then runs). */
GWIPC_API int gwipc_config_set_peer_callbacks(gwipc_config *cfg, gwipc_peer_cb on_connected,
                                              gwipc_peer_gone_cb on_disconnected, void *userdata,
                                              gwipc_destroy_cb destroy);
/* Listener: the authorizer (NULL removes it). */
GWIPC_API int gwipc_config_set_authorize(gwipc_config *cfg, gwipc_authorize_cb cb, void *userdata,
                                         gwipc_destroy_cb destroy);
/* Log records at min_level and above go to cb (NULL: none). Records a peer
 * causes are rate-limited. */
GWIPC_API int gwipc_config_set_log_callback(gwipc_config *cfg, int min_level, gwipc_log_cb cb,
                                            void *userdata, gwipc_destroy_cb destroy);
/* Log records at min_level and above are written, one text line each, to
 * fd (duplicated; -1: none). Written from whatever thread logs. */
GWIPC_API int gwipc_config_set_log_fd(gwipc_config *cfg, int fd, int min_level);
/* Serve the status endpoint (Git's Simple-IPC protocol: ping, version,
 * status, help, and gwipc_node_handle_command commands) at path, with the
 * socket file mode (0: 0600). NULL path: none. */
GWIPC_API int gwipc_config_set_status_path(gwipc_config *cfg, const char *path, uint32_t mode);

/* ======================================================================
 * Nodes
 * ====================================================================== */

/* Creates a node accepting peers on a socket at path (cfg NULL: defaults).
 * It refuses to start while another listener answers there (GWIPC_E_OS with
 * EADDRINUSE in err->sys_errno), replaces a stale socket, and removes its
 * socket on close. *out is owned: gwipc_node_close. Since 0.2. */
GWIPC_API int gwipc_node_listen(const char *path, const gwipc_config *cfg, gwipc_node **out,
                                gwipc_error *err);

/* Creates a node that connects to the listener at path and reconnects after
 * loss, with back-off. It returns at once; the connection is made by
 * dispatch (see on_connected, or the status JSON). *out is owned. Since 0.2. */
GWIPC_API int gwipc_node_dial(const char *path, const gwipc_config *cfg, gwipc_node **out,
                              gwipc_error *err);

/* Closes the node: withdraws its offers, closes its proxies and finders,
 * says goodbye to every peer (without waiting for slow ones), closes the
 * connections and frees every resource. Their handles become stale
 * (GWIPC_E_BADHANDLE); the node handle too. A dispatch running on another
 * thread finishes the callback in progress (whose borrowed data stays
 * valid until it returns) and runs no other; the close waits for it before
 * freeing anything. From a callback it returns at once. Destroy callbacks
 * still due run before it returns. NULL ok. Since 0.2. */
GWIPC_API void gwipc_node_close(gwipc_node *node);

/* Closes the node gracefully: withdrawals and goodbyes are flushed to the
 * peers (waiting up to timeout_usec), then as gwipc_node_close. Returns
 * GWIPC_OK, or GWIPC_E_TIMEOUT if the output could not be flushed in time
 * (the node is closed anyway); GWIPC_E_DEADLOCK from a callback of the node.
 * Since 0.2. */
GWIPC_API int gwipc_node_shutdown(gwipc_node *node, int64_t timeout_usec);

/* A file descriptor readable whenever the node has work: put it in your
 * event loop (level-triggered; readiness may be spurious) and call
 * gwipc_node_dispatch when it is readable. It includes the node's timers,
 * so there is no timeout to query. Owned by the node, valid until close: do
 * not read, write or close it. Returns the fd (>= 0) or a negative code.
 * Since 0.2. */
GWIPC_API int gwipc_node_fd(gwipc_node *node);

/* GWIPC_DISPATCH_MORE is or-ed into gwipc_node_dispatch's result when it
 * left work for another call: call it again before waiting on the fd, which
 * need not be readable for that work. */
#define GWIPC_DISPATCH_MORE (1 << 30)

/* Waits up to timeout_usec for work, then does what is ready: reads peers,
 * advances the protocol, sends, and runs callbacks on the calling thread.
 * Returns the number of callbacks run (>= 0), with GWIPC_DISPATCH_MORE
 * or-ed in when work is left (a flood is taken in bounded slices, or
 * shared-memory ring entries arrived as it finished): call again before
 * waiting, on the fd or in gwipc_node_wait. Errors: GWIPC_E_BUSY (another loop, or called from
 * a callback of this node), GWIPC_E_CLOSED. Since 0.2. */
GWIPC_API int gwipc_node_dispatch(gwipc_node *node, int64_t timeout_usec);

/* Waits up to timeout_usec until the node's fd is readable, without doing
 * the work. Returns 1 (work ready), 0 (timed out) or a negative code. After
 * a dispatch that returned GWIPC_DISPATCH_MORE, dispatch again instead: the
 * work left need not make the fd readable. Since 0.2. */
GWIPC_API int gwipc_node_wait(gwipc_node *node, int64_t timeout_usec);

/* A function run inside a dispatch. */
typedef void (*gwipc_post_cb)(void *userdata);

/* Runs fn(userdata) inside the next dispatch of the node, on its thread,
 * after the callbacks already queued, and makes the fd readable. If the node
 * closes first fn does not run. destroy (may be NULL) runs once afterwards
 * either way. Safe from any thread (and from callbacks). Returns GWIPC_OK,
 * GWIPC_E_CLOSED (then neither fn nor destroy runs). Since 0.2. */
GWIPC_API int gwipc_node_post(gwipc_node *node, gwipc_post_cb fn, void *userdata,
                              gwipc_destroy_cb destroy);

/* Dispatches the node on the calling thread until gwipc_node_stop or close.
 * Returns GWIPC_OK when stopped or closed, GWIPC_E_BUSY if another loop
 * drives the node. Since 0.2. */
GWIPC_API int gwipc_node_run(gwipc_node *node);

/* Starts a thread of the library that runs the node (callbacks then run on
 * it). For programs without an event loop. Stop it with gwipc_node_stop or
 * close. Returns GWIPC_OK, GWIPC_E_BUSY. Since 0.2. */
GWIPC_API int gwipc_node_run_thread(gwipc_node *node);

/* Makes gwipc_node_run (or the run thread) return soon; waits for the run
 * thread to end unless called from one of its callbacks. Not
 * async-signal-safe. Returns GWIPC_OK (also when nothing runs). Since 0.2. */
GWIPC_API int gwipc_node_stop(gwipc_node *node);

/* The node's status (peers, offers, proxies, pools, counters) as JSON, the
 * same document the status endpoint serves. *json is owned (gwipc_free),
 * NUL-terminated; *len (may be NULL) is its length. Since 0.2. */
GWIPC_API int gwipc_node_status_json(gwipc_node *node, char **json, size_t *len);

/* Attaches userdata to a connected peer (returned by
 * gwipc_node_get_peer_userdata; gone with the peer). GWIPC_E_NOTFOUND for a
 * peer not connected. Since 0.2. */
GWIPC_API int gwipc_node_set_peer_userdata(gwipc_node *node, gwipc_peer_id peer, void *userdata);
GWIPC_API int gwipc_node_get_peer_userdata(gwipc_node *node, gwipc_peer_id peer, void **userdata);

/* Application commands on the status endpoint (gwipc_config_set_status_path).
 * A request whose first word is name goes to cb with the whole request
 * (borrowed for the call) and a writer for the response (borrowed for the
 * call). cb runs inside dispatch; return 0 on success, non-zero to fail the
 * request (the client sees the reply cut short: GWIPC_E_SIPC_TRUNCATED). A request waits at most 10 s for a
 * dispatch; responses are at most 16 MiB. */
typedef int (*gwipc_command_cb)(void *userdata, const void *request, size_t len, gwipc_writer *w);

/* Appends to a command's response. Only inside its command callback.
 * Returns GWIPC_OK, GWIPC_E_TOO_LARGE, GWIPC_E_BADHANDLE. Since 0.2. */
GWIPC_API int gwipc_writer_write(gwipc_writer *w, const void *data, size_t len);

/* Registers a command (1 to 64 bytes, no spaces). A built-in (ping,
 * version, status, help) may be replaced once. Returns GWIPC_OK,
 * GWIPC_E_DUPLICATE, GWIPC_E_INVALID_CONFIG (no status endpoint, bad name).
 * destroy runs when the node closes. Since 0.2. */
GWIPC_API int gwipc_node_handle_command(gwipc_node *node, const char *name, gwipc_command_cb cb,
                                        void *userdata, gwipc_destroy_cb destroy);

/* ======================================================================
 * Offers: providing a service
 * ====================================================================== */

/* A method call received by an offer, handed to on_call (borrowed for the
 * callback). To answer later, from any thread, copy the struct: the copy
 * stays valid until the call is answered, or the node closes. `data` is a
 * read-only view of the caller's shared memory with the same lifetime.
 * Fire-and-forget calls (fire_and_forget = 1) are valid only during the
 * callback and need no answer. */
typedef struct gwipc_call {
    uint32_t struct_size;
    uint16_t method;
    uint8_t fire_and_forget;
    uint8_t reserved_;
    gwipc_peer_id peer;
    const void *data;
    size_t len;
    uint64_t private_[2];
} gwipc_call;

typedef void (*gwipc_subscribers_cb)(void *userdata, gwipc_offer *offer, uint16_t event, int subscribed);
typedef void (*gwipc_call_cb)(void *userdata, gwipc_offer *offer, const gwipc_call *call);
typedef void (*gwipc_update_request_cb)(void *userdata, gwipc_offer *offer, uint16_t event);

/* What an offer provides, and its callbacks (all may be NULL but on_call,
 * needed when methods > 0). Input only; set struct_size with
 * GWIPC_OFFER_PARAMS_INIT. */
typedef struct gwipc_offer_params {
    uint32_t struct_size;
    uint16_t events;  /* event ids 0..events-1 */
    uint16_t methods; /* method ids 0..methods-1 */
    const uint16_t *fields; /* events that are fields (their latest value is cached) */
    size_t n_fields;
    gwipc_geometry geometry;       /* the event pool, shared by subscribers ({0,0}: 64 x 4 KiB) */
    gwipc_geometry reply_geometry; /* each binding's reply pool ({0,0}: 16 x 4 KiB) */
    uint32_t subscriber_slots;     /* slots one subscriber may hold (0: half the pool) */
    uint32_t flags;                /* GWIPC_OFFER_* (0: none). Since 0.2 */
    /* The first subscriber of an event arrived (1) or the last left (0). */
    gwipc_subscribers_cb on_subscription;
    /* A method call: answer with gwipc_call_reply / gwipc_call_fail, now or later. */
    gwipc_call_cb on_call;
    /* The caller of a pending call cancelled it, timed out or went away; the
     * call must still be answered (the answer is dropped) to free it. */
    gwipc_call_cb on_cancel;
    /* A peer wants the current value of an event with none cached: publish it. */
    gwipc_update_request_cb on_update_request;
    void *userdata;
    gwipc_destroy_cb destroy;
} gwipc_offer_params;
#define GWIPC_OFFER_PARAMS_INIT \
    {sizeof(gwipc_offer_params), 0, 0, NULL, 0, {0, 0}, {0, 0}, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL}

/* gwipc_offer_params.flags. GWIPC_OFFER_NO_INLINE: send every update by
 * slot. By default an update of at most 224 bytes to a peer connected
 * through rings travels as a copy inside the ring (cheaper for both sides);
 * its slot then comes back as soon as the subscriber's dispatch has read
 * it, so a kept sample, or a callback still running, holds no slot. With
 * the flag every subscriber reads in place and holds the slot until its
 * callback returns or the kept sample is released. */
#define GWIPC_OFFER_NO_INLINE (1u << 0)

/* Starts offering svc. Peers that require a compatible version are told, now
 * and when they connect later. *out is owned: gwipc_offer_close. Errors:
 * GWIPC_E_INVALID_SERVICE, GWIPC_E_INVALID_CONFIG, GWIPC_E_DUPLICATE (the
 * node already offers id/major/instance), GWIPC_E_CLOSED. Since 0.2. */
GWIPC_API int gwipc_node_offer(gwipc_node *node, const gwipc_service_id *svc,
                               const gwipc_offer_params *params, gwipc_offer **out, gwipc_error *err);

/* Withdraws the offer: bound peers see it go, every slot they held is
 * released, open loans fail with GWIPC_E_CLOSED. NULL ok. Since 0.2. */
GWIPC_API void gwipc_offer_close(gwipc_offer *offer);

/* Copies data into a slot and sends it to every subscriber of event; a
 * field also caches it. With no subscriber it succeeds and sends nothing.
 * wait_usec: how long to wait for a free slot (0: fail at once). Errors:
 * GWIPC_E_NOSLOT, GWIPC_E_TOO_LARGE, GWIPC_E_UNKNOWN_EVENT, GWIPC_E_CLOSED,
 * GWIPC_E_DEADLOCK (waiting, from a callback of the node). Since 0.2. */
GWIPC_API int gwipc_offer_publish(gwipc_offer *offer, uint16_t event, const void *data, size_t len,
                                  int64_t wait_usec);

/* A slot lent for writing an event in place (zero copy). The caller stores
 * the struct; data is writable shared memory of capacity bytes, valid until
 * the loan is published or discarded. */
typedef struct gwipc_loan {
    uint32_t struct_size;
    uint16_t event;
    uint16_t reserved_;
    void *data;
    size_t capacity;
    uint64_t private_[2];
} gwipc_loan;

/* Takes a free slot for event into *loan (caller storage), waiting up to
 * wait_usec for one. Errors as gwipc_offer_publish. Since 0.2. */
GWIPC_API int gwipc_offer_loan(gwipc_offer *offer, uint16_t event, int64_t wait_usec, gwipc_loan *loan);

/* Publishes the first len bytes of the loan's slot and ends the loan
 * (consumed on success and on GWIPC_E_CLOSED). Errors: GWIPC_E_LOAN_DONE
 * (already ended), GWIPC_E_TOO_LARGE (the loan stays open),
 * GWIPC_E_BADHANDLE. Since 0.2. */
GWIPC_API int gwipc_loan_publish(gwipc_loan *loan, size_t len);

/* Ends the loan without publishing (consumed). GWIPC_E_LOAN_DONE if it had
 * ended; NULL: GWIPC_E_INVAL. Since 0.2. */
GWIPC_API int gwipc_loan_discard(gwipc_loan *loan);

/* Answers a call with data (copied into the binding's reply pool). On
 * GWIPC_E_NOSLOT or GWIPC_E_TOO_LARGE the call stays pending and may be
 * answered again. Returns GWIPC_E_CANCELLED if the caller no longer waits
 * (the call is freed), GWIPC_E_CALL_DONE if it was answered, GWIPC_E_CLOSED
 * once the node closed. Any thread. Since 0.2. */
GWIPC_API int gwipc_call_reply(const gwipc_call *call, const void *data, size_t len);

/* Answers a call with an application error code and optional data, as
 * gwipc_call_reply. Since 0.2. */
GWIPC_API int gwipc_call_fail(const gwipc_call *call, int32_t app_code, const void *data, size_t len);

/* 1 if the caller cancelled the call, timed out or went away, 0 if it still
 * waits, <0 for a bad call. Since 0.2. */
GWIPC_API int gwipc_call_is_cancelled(const gwipc_call *call);

/* ======================================================================
 * Proxies: using a service
 * ====================================================================== */

/* A received event update, borrowed for the sample callback: data is a
 * read-only view of the provider's shared memory (writing faults) or, for
 * an update of at most 224 bytes that came inline through a ring (unless
 * the provider set GWIPC_OFFER_NO_INLINE), the library's copy of it (do
 * not write it either). It is released when the callback returns unless kept with
 * gwipc_sample_keep; a kept copy stays valid until released, even after
 * the node closes. */
typedef struct gwipc_sample {
    uint32_t struct_size;
    uint16_t event;
    uint8_t requested; /* answers a request for the current value (a field) */
    uint8_t kept;      /* 1 in a kept copy */
    uint64_t seq;      /* per-event sequence number; a jump means missed updates */
    const void *data;
    size_t len;
    uint64_t private_[2];
} gwipc_sample;

/* A method's reply: data is a read-only view of the binding's reply pool.
 * From gwipc_proxy_call it is owned (gwipc_reply_release); in a completion
 * callback it is borrowed for the callback unless kept. */
typedef struct gwipc_reply {
    uint32_t struct_size;
    uint32_t reserved_;
    const void *data;
    size_t len;
    uint64_t private_[2];
} gwipc_reply;

typedef void (*gwipc_availability_cb)(void *userdata, gwipc_proxy *proxy, int available);
/* The provider's answer to a subscription: status 0 accepted, else its
 * refusal (the wire status code, e.g. 2 permission denied, 7 unknown event). */
typedef void (*gwipc_suback_cb)(void *userdata, gwipc_proxy *proxy, uint16_t event, int status);
typedef void (*gwipc_sample_cb)(void *userdata, gwipc_proxy *proxy, const gwipc_sample *sample);
/* A call's completion: exactly one per call (reply, timeout, cancel, the
 * service going away). On success err is NULL and reply is borrowed (NULL
 * for an empty reply); on GWIPC_E_APP both are set; else reply is NULL. */
typedef void (*gwipc_reply_cb)(void *userdata, gwipc_proxy *proxy, gwipc_call_id id,
                               const gwipc_reply *reply, const gwipc_error *err);

/* How a node consumes a service. Input only; GWIPC_PROXY_PARAMS_INIT. */
typedef struct gwipc_proxy_params {
    uint32_t struct_size;
    gwipc_availability_cb on_availability; /* bound to a provider (1) or not any more (0) */
    gwipc_suback_cb on_subscription;       /* the provider's answer to each subscription */
    gwipc_geometry call_geometry;          /* each binding's call pool ({0,0}: 16 x 4 KiB) */
    void *userdata;
    gwipc_destroy_cb destroy;
} gwipc_proxy_params;
#define GWIPC_PROXY_PARAMS_INIT {sizeof(gwipc_proxy_params), NULL, NULL, {0, 0}, NULL, NULL}

/* Subscription modes. */
enum gwipc_subscribe_mode {
    GWIPC_UPDATES = 0,      /* every update from now on */
    GWIPC_INITIAL_VALUE = 1 /* and the current value of a field at once */
};

/* Subscription states (gwipc_proxy_subscription_state). */
enum gwipc_subscription_state {
    GWIPC_SUBSCRIPTION_PENDING = 0, /* not acknowledged yet (or the service is unavailable) */
    GWIPC_SUBSCRIPTION_ACTIVE = 1,
    GWIPC_SUBSCRIPTION_REFUSED = 2
};

/* Starts consuming svc: peers are asked for it, now and when they connect.
 * It is available once bound to a compatible offer (never the node's own).
 * *out is owned: gwipc_proxy_close. Errors: GWIPC_E_INVALID_SERVICE,
 * GWIPC_E_DUPLICATE, GWIPC_E_INVALID_CONFIG, GWIPC_E_CLOSED. Since 0.2. */
GWIPC_API int gwipc_node_require(gwipc_node *node, const gwipc_service_id *svc,
                                 const gwipc_proxy_params *params, gwipc_proxy **out, gwipc_error *err);

/* Stops consuming: the provider drops the binding, pending calls complete
 * with GWIPC_E_CLOSED, subscriptions end. Kept samples and replies stay
 * readable until released (the provider may reuse their slots). NULL ok.
 * Since 0.2. */
GWIPC_API void gwipc_proxy_close(gwipc_proxy *proxy);

/* 1 if bound to a provider now, 0 if not, <0 for a bad handle. Since 0.2. */
GWIPC_API int gwipc_proxy_is_available(gwipc_proxy *proxy);

/* Subscribes to event (mode: gwipc_subscribe_mode); cb runs for each update.
 * Kept across loss and rebinding. Subscribing again replaces the callback
 * (the old destroy runs). Errors: GWIPC_E_UNKNOWN_EVENT (bound service has
 * fewer events), GWIPC_E_INVAL, GWIPC_E_CLOSED. Since 0.2. */
GWIPC_API int gwipc_proxy_subscribe(gwipc_proxy *proxy, uint16_t event, int mode, gwipc_sample_cb cb,
                                    void *userdata, gwipc_destroy_cb destroy);

/* Ends the subscription: no callback for event starts after it returns, and
 * its destroy runs in the next dispatch. Not subscribed: GWIPC_OK, nothing
 * done. Since 0.2. */
GWIPC_API int gwipc_proxy_unsubscribe(gwipc_proxy *proxy, uint16_t event);

/* Writes the subscription's gwipc_subscription_state to *state.
 * GWIPC_E_NOTFOUND if event is not subscribed. Since 0.2. */
GWIPC_API int gwipc_proxy_subscription_state(gwipc_proxy *proxy, uint16_t event, int *state);

/* Asks the provider for a field's current value; it arrives at the
 * subscription's callback with requested = 1. The event must be subscribed
 * and the service available. Since 0.2. */
GWIPC_API int gwipc_proxy_request_update(gwipc_proxy *proxy, uint16_t event);

/* Keeps the sample being delivered (only inside its callback) into *kept
 * (caller storage, kept = 1): its data stays valid, and a sample read in
 * place keeps its slot held (an inline copy holds none), until
 * gwipc_sample_release. Copies of *kept name the same sample; keeping it
 * again gives the same handle, unless it was released meanwhile. Errors:
 * GWIPC_E_BADHANDLE (not the sample being delivered, or kept and released
 * already). Since 0.2. */
GWIPC_API int gwipc_sample_keep(const gwipc_sample *sample, gwipc_sample *kept);

/* Releases a kept sample (any thread); later releases of it or of copies do
 * nothing. A borrowed sample or NULL is ignored. Since 0.2. */
GWIPC_API void gwipc_sample_release(gwipc_sample *kept);

/* Calls method with the request (copied) and waits for the reply, first
 * waiting for the service to be available and for a free call slot, all
 * within timeout_usec (GWIPC_FOREVER: no limit). On GWIPC_OK and on
 * GWIPC_E_APP (err->app_code) *reply (caller storage) is owned: release it
 * with gwipc_reply_release; on other errors it is zeroed. Errors:
 * GWIPC_E_TIMEOUT, GWIPC_E_NOT_AVAILABLE, GWIPC_E_UNKNOWN_METHOD,
 * GWIPC_E_TOO_LARGE, GWIPC_E_REFUSED / _PERMISSION / _QUOTA (the provider's
 * middleware, err->status), GWIPC_E_CLOSED, GWIPC_E_DEADLOCK (from a
 * callback of the node). Since 0.2. */
GWIPC_API int gwipc_proxy_call(gwipc_proxy *proxy, uint16_t method, const void *request, size_t len,
                               int64_t timeout_usec, gwipc_reply *reply, gwipc_error *err);

/* Calls method without waiting; cb runs exactly once inside a dispatch with
 * the outcome (see gwipc_reply_cb), then destroy. timeout_usec: 0 or
 * GWIPC_FOREVER for none. The id (may be NULL) names the call for
 * gwipc_proxy_cancel. Fails at once (nothing runs, not even destroy) with
 * GWIPC_E_NOT_AVAILABLE, GWIPC_E_NOSLOT, GWIPC_E_UNKNOWN_METHOD,
 * GWIPC_E_TOO_LARGE, GWIPC_E_CLOSED. If the node closes before the
 * completion runs, only destroy runs. Since 0.2. */
GWIPC_API int gwipc_proxy_call_async(gwipc_proxy *proxy, uint16_t method, const void *request,
                                     size_t len, int64_t timeout_usec, gwipc_reply_cb cb,
                                     void *userdata, gwipc_destroy_cb destroy, gwipc_call_id *id);

/* Calls method without a reply (fire-and-forget). Since 0.2. */
GWIPC_API int gwipc_proxy_send(gwipc_proxy *proxy, uint16_t method, const void *request, size_t len);

/* Cancels a pending call: it completes with GWIPC_E_CANCELLED and the
 * provider is told. GWIPC_E_NOTFOUND if it already completed. Since 0.2. */
GWIPC_API int gwipc_proxy_cancel(gwipc_proxy *proxy, gwipc_call_id id);

/* Keeps a borrowed reply (only inside its completion callback) into *kept,
 * which is then owned (gwipc_reply_release). Keeping it again gives the
 * same handle, unless it was released meanwhile. Errors: GWIPC_E_BADHANDLE
 * (not the reply being delivered, or kept and released already). Since
 * 0.2. */
GWIPC_API int gwipc_reply_keep(const gwipc_reply *reply, gwipc_reply *kept);

/* Releases an owned reply (any thread); later releases do nothing. NULL
 * and a zeroed reply are ignored. Since 0.2. */
GWIPC_API void gwipc_reply_release(gwipc_reply *reply);

/* ======================================================================
 * Find: watching for service instances
 * ====================================================================== */

/* An instance appearing (available = 1) or disappearing (0) at a peer;
 * borrowed for the callback, strings included. */
typedef struct gwipc_find_event {
    uint32_t struct_size;
    gwipc_service_id service; /* as the peer offers it (its own minor) */
    gwipc_peer_id peer;
    int available;
} gwipc_find_event;

typedef void (*gwipc_find_cb)(void *userdata, gwipc_finder *finder, const gwipc_find_event *ev);

/* Watches every peer, now and later, for offers of interface id (same major,
 * minor at least min_minor) with the given instance (NULL, "" or "*": any).
 * Instances already known are reported in the next dispatch. *out is owned:
 * gwipc_finder_close. Since 0.2. */
GWIPC_API int gwipc_node_find(gwipc_node *node, const char *id, uint16_t major, uint16_t min_minor,
                              const char *instance, gwipc_find_cb cb, void *userdata,
                              gwipc_destroy_cb destroy, gwipc_finder **out);

/* Stops watching; destroy runs. NULL ok. Since 0.2. */
GWIPC_API void gwipc_finder_close(gwipc_finder *finder);

/* ======================================================================
 * Simple-IPC: one-shot requests (Git's pkt-line protocol)
 * ====================================================================== */

/* Sends request to the Simple-IPC server at path (a node's status endpoint,
 * or Git's) and returns the whole response in *response (owned: gwipc_free;
 * NUL-terminated beyond *len for convenience; never NULL on success). Waits
 * up to timeout_usec. Errors: GWIPC_E_SIPC_CONNECT (nothing answers),
 * GWIPC_E_SIPC_TRUNCATED, GWIPC_E_SIPC_PROTOCOL, GWIPC_E_TIMEOUT. Any thread;
 * from a callback it does not deadlock (it needs no dispatch). Since 0.2. */
GWIPC_API int gwipc_sipc_query(const char *path, const void *request, size_t len, int64_t timeout_usec,
                               char **response, size_t *response_len, gwipc_error *err);

#ifdef __cplusplus
}
#endif

#endif /* GWIPC_H */
