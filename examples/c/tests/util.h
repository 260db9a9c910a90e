/*
 * util.h - helpers shared by gwipc's C tests (cmocka).
 *
 * Rules every test follows (they are why these helpers exist):
 *  - Never assert inside a gwipc callback. cmocka reports a failure by
 *    longjmp()ing out of the test, and a longjmp across the Go frames between
 *    dispatch and a callback wrecks the runtime. Callbacks record what they
 *    see; the test asserts after dispatch returned.
 *  - Never fork() without exec() (except the fork-guard test, whose child
 *    only calls gwipc and _exit()s). Peers are separate processes started
 *    with posix_spawn (gwt_spawn).
 *  - Every wait is bounded: GWT_UNTIL, gwt_expect and gwt_wait_exit fail the
 *    test with a message on timeout, and a watchdog ends a test that hangs
 *    anyway (GWT_TEST_TIMEOUT_S, default 60 s per test).
 *  - cmocka replaces SIGSEGV/SIGBUS/SIGFPE/SIGILL/SIGSYS handlers with
 *    signal() around each test, without SA_ONSTACK or SA_SIGINFO; the Go
 *    runtime's handlers are put back at the start of every test (GWT_TEST),
 *    so a fault in Go code stays a Go panic (GWIPC_E_INTERNAL), as in a
 *    real host.
 */
#ifndef GWT_UTIL_H
#define GWT_UTIL_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <pthread.h>
#include <sys/types.h>

#include <cmocka.h>

#include <gwipc.h>

/* ---- Running tests -------------------------------------------------------- */

typedef void (*gwt_test_fn)(void);
struct gwt_case {
    gwt_test_fn fn;
    const char *name;
};
void gwt_trampoline(void **state);
/* A cmocka test entry for `void fn(void)`. */
#define GWT_TEST(fn) {#fn, gwt_trampoline, NULL, NULL, &(struct gwt_case){fn, #fn}}

/* Fails the current test with a printf-style message (main thread only). */
#define GWT_FAIL(...) gwt_fail(__FILE__, __LINE__, __VA_ARGS__)
void gwt_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
/* A boolean check with a message: GWT_CHECK(x > 0, "x is %d", x). */
#define GWT_CHECK(cond, ...)                                                                \
    do {                                                                                    \
        if (!(cond))                                                                        \
            gwt_fail(__FILE__, __LINE__, __VA_ARGS__);                                      \
    } while (0)
/* Runs the group; returns the number of failed tests (main's exit code). */
int gwt_run(const char *group, const struct CMUnitTest *tests, size_t n);
#define GWT_RUN(tests) gwt_run(__FILE__, tests, sizeof(tests) / sizeof((tests)[0]))

/* ---- Time, paths, the build tree ----------------------------------------- */

int64_t gwt_now_us(void);
void gwt_sleep_us(int64_t us);
/* A fresh path in this process's temporary directory ("<dir>/<n>-name"),
 * short enough for a Unix socket. Returns buf. */
char *gwt_path(char *buf, size_t cap, const char *name);
/* The build directory (env GWT_BUILD_DIR, else the one this was built in). */
const char *gwt_build_dir(void);
/* buf = "<build dir>/<rel>". Returns buf. */
char *gwt_build_path(char *buf, size_t cap, const char *rel);
/* 1 if a file exists at the path relative to the build dir. */
int gwt_have_build_file(const char *rel);

/* ---- gwipc helpers --------------------------------------------------------- */

/* The test service: "gwt.test" v1.2, the given instance. */
gwipc_service_id gwt_service(const char *instance);
enum { GWT_EV_PLAIN = 0, GWT_EV_FIELD = 1, GWT_EVENTS = 2 };
enum {
    GWT_M_ECHO = 0, /* replies with the request */
    GWT_M_FAIL = 1, /* application error 42, payload "bad:" + request */
    GWT_M_SLOW = 2, /* request "MS": replies "late" after MS ms, from another thread */
    GWT_M_FF = 3,   /* fire-and-forget: the provider prints it */
    GWT_METHODS = 4
};
#define GWT_APP_CODE 42

/* Asserts rc == want, naming both codes. */
#define GWT_RC(rc, want) gwt_assert_rc((rc), (want), #rc, __FILE__, __LINE__)
void gwt_assert_rc(int rc, int want, const char *expr, const char *file, int line);

/* Dispatches node for up to wait_us (again at once while it returns
 * GWIPC_DISPATCH_MORE); fails the test on an error code. Returns the number
 * of callbacks run. */
int gwt_dispatch(gwipc_node *node, int64_t wait_us);

/* Dispatches node until cond holds; fails the test after timeout_us. */
#define GWT_UNTIL(node, cond, timeout_us)                                                   \
    do {                                                                                    \
        int64_t gwt_dl_ = gwt_now_us() + (timeout_us);                                      \
        while (!(cond)) {                                                                   \
            if (gwt_now_us() > gwt_dl_)                                                     \
                GWT_FAIL("timed out after %lld ms waiting for: %s", (long long)((timeout_us) / 1000), \
                         #cond);                                                            \
            gwt_dispatch((node), 5000);                                                     \
        }                                                                                   \
    } while (0)

/* Waits (without dispatching) until cond holds; fails after timeout_us. */
#define GWT_WAIT(cond, timeout_us)                                                          \
    do {                                                                                    \
        int64_t gwt_dl_ = gwt_now_us() + (timeout_us);                                      \
        while (!(cond)) {                                                                   \
            if (gwt_now_us() > gwt_dl_)                                                     \
                GWT_FAIL("timed out after %lld ms waiting for: %s", (long long)((timeout_us) / 1000), \
                         #cond);                                                            \
            gwt_sleep_us(1000);                                                             \
        }                                                                                   \
    } while (0)

/* Nodes: the test's node is closed at the start of the next test if a
 * failure skipped its close (gwt_node_close forgets it). */
gwipc_node *gwt_listen(const char *path, const char *name, const char *status_path);
gwipc_node *gwt_dial(const char *path, const char *name);
/* Dials with cfg (still the caller's to free). */
gwipc_node *gwt_dial_config(const char *path, gwipc_config *cfg);
void gwt_node_close(gwipc_node *node);
/* Forgets a node the test closed itself. */
void gwt_node_forget(gwipc_node *node);
/* The node's status JSON (malloc'd, NUL-terminated; free it). */
char *gwt_status_json(gwipc_node *node);

/* A recorder: callbacks that note what a proxy receives (thread-safe; read
 * the fields under mu, or with the accessors, while a run thread lives). */
#define GWT_REC_MAX 2048
typedef struct gwt_srec {
    uint16_t event;
    uint8_t requested, kept;
    uint64_t seq;
    size_t len;
    char data[64]; /* NUL-terminated copy (truncated) */
    pid_t tid;     /* gettid() in the callback */
} gwt_srec;
typedef struct gwt_rec {
    pthread_mutex_t mu;
    int available;     /* the last availability reported (-1: none yet) */
    int avail_events;  /* availability callbacks */
    int suback[8];     /* the last status per event (-1: none) */
    int n;             /* samples */
    gwt_srec s[GWT_REC_MAX];
    int destroyed;     /* destroy callbacks with this recorder as userdata */
    pid_t tid;         /* gettid() of the last callback */
} gwt_rec;
void gwt_rec_init(gwt_rec *r);
int gwt_rec_n(gwt_rec *r);
int gwt_rec_available(gwt_rec *r);
int gwt_rec_suback(gwt_rec *r, int event);
/* Waits (dispatching node, or not if node is NULL) for n samples. */
void gwt_rec_wait(gwt_rec *r, gwipc_node *node, int n, int64_t timeout_us);
void gwt_on_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s);
void gwt_on_avail(void *ud, gwipc_proxy *p, int available);
void gwt_on_suback(void *ud, gwipc_proxy *p, uint16_t event, int status);
void gwt_on_destroy(void *ud);
/* Requires gwt.test/instance on node with the recorder's callbacks (and
 * gwt_on_destroy) and subscribes to event (mode) if event >= 0. */
gwipc_proxy *gwt_require(gwipc_node *node, const char *instance, gwt_rec *r, int event, int mode);

/* 1 if the text contains the needle. */
int gwt_contains(const char *text, const char *needle);

/* ---- Processes ------------------------------------------------------------- */

/* A child process with a pipe to its stdin and one from its stdout (line
 * protocol; its stderr is ours). */
typedef struct gwt_child {
    pid_t pid;
    int in, out;
    char buf[65536];
    size_t len;
    int eof;
    char name[64];
    char last[4][256]; /* the last lines skipped, for failure messages */
    unsigned nlast;
} gwt_child;

/* Starts prog (absolute, or relative to the build dir) with the
 * NULL-terminated arguments. Fails the test on error. */
void gwt_spawn(gwt_child *c, const char *prog, ...);
void gwt_spawnv(gwt_child *c, const char *prog, char *const argv[]);
/* The same, with its stderr written to a file. */
void gwt_spawn_stderr(gwt_child *c, const char *stderr_path, const char *prog, char *const argv[]);
/* Writes one line (a newline is added) to its stdin. */
void gwt_send(gwt_child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads its stdout until a line starting with prefix, dispatching node (may
 * be NULL) meanwhile; copies the line (no newline) to line (may be NULL).
 * Returns 0, or -1 on timeout, -2 at end of output. gwt_expect fails the
 * test instead. */
int gwt_try_expect(gwt_child *c, gwipc_node *node, const char *prefix, char *line, size_t cap,
                   int64_t timeout_us);
void gwt_expect(gwt_child *c, gwipc_node *node, const char *prefix, char *line, size_t cap, int64_t timeout_us);
/* Closes its stdin and waits for it to exit, dispatching node meanwhile;
 * SIGKILLs it and fails the test after timeout_us. Returns its exit code, or
 * 128 + signal. */
int gwt_wait_exit(gwt_child *c, gwipc_node *node, int64_t timeout_us);
/* Sends sig (the child is reaped later by gwt_wait_exit). */
void gwt_kill(gwt_child *c, int sig);
/* Reads all of its output until it exits (bounded); returns it (malloc'd). */
char *gwt_read_all(gwt_child *c, gwipc_node *node, int64_t timeout_us, int *exit_code);

/* Starts the C peer (gwt_peer) in a role and waits for its "ready" line. */
void gwt_peer_provider(gwt_child *c, const char *sock, const char *status, const char *name);
/* The same, with gwt_peer's optional last argument (NULL: none; "noinline"). */
void gwt_peer_provider_opt(gwt_child *c, const char *sock, const char *status, const char *name, const char *opt);
void gwt_peer_consumer(gwt_child *c, const char *sock, const char *name);

/* ---- Signals --------------------------------------------------------------- */

/* sigaction() of sig, compared by handler and SA_ONSTACK/SA_SIGINFO. */
int gwt_same_sigaction(const struct sigaction *a, const struct sigaction *b);

/* ---- Thread ids ------------------------------------------------------------ */

pid_t gwt_gettid(void);

#endif
