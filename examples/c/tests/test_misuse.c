/*
 * test_misuse - table-driven misuse of every function: NULL for each pointer
 * argument, wrong struct_size, double close, use after close, wrong kinds of
 * handles, stale or copied per-message structs, oversize payloads, invalid
 * service ids. The header: "Every handle passed in is checked: NULL, a handle
 * of the wrong kind, or one already closed returns GWIPC_E_BADHANDLE (or
 * GWIPC_E_INVAL for NULL); it never crashes."
 *
 * The table runs in a child process (this binary with --table FROM), which
 * builds live objects first (a listener with an offer, a dialler bound to a
 * gwt_peer provider, received samples, replies and calls from a gwt_peer
 * consumer) and prints one line per row. If a row crashes or hangs the child,
 * the parent records that row and starts a new child at the next one, so one
 * crash does not hide the rest of the table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* ---- Expected outcomes ------------------------------------------------------ */

struct want {
    int n; /* >0: rc is one of codes[0..n-1]; -1: any error (< 0); 0: anything */
    int codes[3];
};
#define IS(c) {1, {c, 0, 0}}
#define ONE_OF(a, b) {2, {a, b, 0}}
#define ONE_OF3(a, b, c) {3, {a, b, c}}
#define ANY_ERROR {-1, {0, 0, 0}}
#define NO_CRASH {0, {0, 0, 0}}
#define OUT_NOT_NULL 1001     /* a failing constructor left *out non-NULL */
#define ERR_NOT_FILLED 1002   /* the gwipc_error was not filled as the header says */
#define ERR_OVERWRITTEN 1003  /* bytes past err->struct_size were written */
#define NOT_ZEROED 1004       /* a failed call left *reply non-zero */
#define HANDLE_REUSED 1005    /* a handle value came back */
#define STAYED_PENDING 1006   /* a call that should have stayed pending did not */

/* ---- The live objects (built in the child, before the rows) ---------------- */

static struct fx {
    char sock[256], status[256], psock[256], other[256];
    gwipc_node *ln, *dn;        /* listener (offer o, status endpoint); dialler bound to the provider */
    gwipc_offer *o;             /* events 2 (1 a field), methods 4, 256-byte slots */
    gwipc_proxy *p;             /* bound to gwt_peer provider, subscribed to event 0 */
    gwipc_proxy *p_nobody;      /* requires an instance nobody offers */
    gwipc_finder *fi;
    gwipc_config *cfg;          /* live */
    gwipc_node *closed_node;
    gwipc_offer *closed_offer;
    gwipc_proxy *closed_proxy;
    gwipc_finder *closed_finder;
    gwipc_config *freed_cfg;
    gwipc_loan done_loan, done_loan_copy, orphan_loan; /* published; its copy; its offer closed */
    gwipc_sample kept, kept_copy;  /* kept in the callback, released; a copy */
    int have_sample;
    gwipc_reply released, released_copy, live_reply;
    gwipc_call pending, pending2, answered_copy, ff_copy;
    int n_calls;
    gwipc_writer *stale_writer;
    gwt_child prov, cons;
} F;

static long forged[32]; /* a "handle" that is no handle */
#define FORGED_NODE ((gwipc_node *)(void *)forged)
#define GARBAGE ((void *)(uintptr_t)0xAAAAAAAAAAAAAAAAull)
#define PP (&(gwipc_proxy_params)GWIPC_PROXY_PARAMS_INIT)
#define SVC(id, inst) (&(gwipc_service_id){(id), 1, 0, (inst)})
#define A10 "aaaaaaaaaa"
#define ID64 A10 A10 A10 A10 A10 A10 "aaaa"
#define ID65 ID64 "a"

static void fx_on_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)p;
    if (!F.have_sample && gwipc_sample_keep(s, &F.kept) == GWIPC_OK) {
        F.kept_copy = F.kept;
        F.have_sample = 1;
    }
}

static void fx_on_call(void *ud, gwipc_offer *o, const gwipc_call *call)
{
    (void)ud, (void)o;
    if (call->fire_and_forget)
        F.ff_copy = *call; /* valid only during this callback */
    else if (F.n_calls == 0)
        F.pending = *call; /* left unanswered */
    else if (F.n_calls == 1)
        F.pending2 = *call;
    else {
        F.answered_copy = *call;
        gwipc_call_reply(call, "ok", 2);
    }
    F.n_calls += !call->fire_and_forget;
}

static int writer_null_data_rc = 1;
static int fx_on_grab(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    (void)ud, (void)req, (void)len;
    F.stale_writer = w;
    writer_null_data_rc = gwipc_writer_write(w, NULL, 5); /* inside its callback, NULL data */
    return gwipc_writer_write(w, "grabbed", 7) == GWIPC_OK ? 0 : 1;
}

static int noop_cmd(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    (void)ud, (void)req, (void)len, (void)w;
    return 0;
}
static void noop_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s) { (void)ud, (void)p, (void)s; }
static void noop_reply(void *ud, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)ud, (void)p, (void)id, (void)r, (void)e;
}
static void noop_find(void *ud, gwipc_finder *f, const gwipc_find_event *e) { (void)ud, (void)f, (void)e; }
static void noop_post(void *ud) { (void)ud; }

/* Dispatches both nodes until cond; exits the child on timeout. */
#define PUMP_UNTIL(cond)                                                                 \
    do {                                                                                 \
        int64_t dl_ = gwt_now_us() + 10000000;                                           \
        while (!(cond)) {                                                                \
            if (gwt_now_us() > dl_) {                                                    \
                fprintf(stderr, "test_misuse: fixture: timed out waiting for %s\n", #cond); \
                exit(3);                                                                 \
            }                                                                            \
            gwipc_node_dispatch(F.ln, 1000);                                             \
            gwipc_node_dispatch(F.dn, 1000);                                             \
        }                                                                                \
    } while (0)

static gwipc_offer_params offer_params(void)
{
    static const uint16_t fields[] = {GWT_EV_FIELD};
    gwipc_offer_params p = GWIPC_OFFER_PARAMS_INIT;
    p.events = GWT_EVENTS;
    p.methods = GWT_METHODS;
    p.fields = fields;
    p.n_fields = 1;
    p.geometry.slot_size = 256;
    p.geometry.slot_count = 8;
    p.reply_geometry.slot_size = 256;
    p.reply_geometry.slot_count = 4;
    p.on_call = fx_on_call;
    return p;
}

static void build_fixture(void)
{
    gwipc_service_id one = gwt_service("one");
    gwipc_offer_params op = offer_params();
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    pp.call_geometry.slot_size = 256;
    pp.call_geometry.slot_count = 4;
    gwt_path(F.sock, sizeof F.sock, "l.sock");
    gwt_path(F.status, sizeof F.status, "l.status");
    gwt_path(F.psock, sizeof F.psock, "p.sock");
    gwt_path(F.other, sizeof F.other, "x.sock");

    F.ln = gwt_listen(F.sock, "misuse-listener", F.status);
    GWT_RC(gwipc_node_offer(F.ln, &one, &op, &F.o, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_handle_command(F.ln, "grab", fx_on_grab, NULL, NULL), GWIPC_OK);
    gwt_peer_provider(&F.prov, F.psock, NULL, "misuse-provider");
    F.dn = gwt_dial(F.psock, "misuse-dialler");
    GWT_RC(gwipc_node_require(F.dn, &one, &pp, &F.p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(F.p, GWT_EV_PLAIN, GWIPC_UPDATES, fx_on_sample, NULL, NULL), GWIPC_OK);
    gwipc_service_id nobody = gwt_service("nobody");
    GWT_RC(gwipc_node_require(F.dn, &nobody, &pp, &F.p_nobody, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_find(F.dn, "gwt.test", 1, 0, NULL, noop_find, NULL, NULL, &F.fi), GWIPC_OK);
    GWT_RC(gwipc_config_new(&F.cfg), GWIPC_OK);

    /* A sample: kept, copied, released. */
    PUMP_UNTIL(gwipc_proxy_is_available(F.p) == 1);
    int state = -1;
    PUMP_UNTIL(gwipc_proxy_subscription_state(F.p, GWT_EV_PLAIN, &state) == GWIPC_OK &&
               state == GWIPC_SUBSCRIPTION_ACTIVE);
    gwt_send(&F.prov, "pub 1");
    PUMP_UNTIL(F.have_sample);
    gwipc_sample_release(&F.kept);

    /* Calls into our offer from a consumer process: one left pending, one
     * more pending, one answered (its copy kept), one fire-and-forget. */
    gwt_peer_consumer(&F.cons, F.sock, "misuse-consumer");
    gwt_expect(&F.cons, F.ln, "avail 1", NULL, 0, 10000000);
    gwt_send(&F.cons, "call a %d pending", GWT_M_ECHO);
    PUMP_UNTIL(F.n_calls == 1);
    gwt_send(&F.cons, "call b %d pending2", GWT_M_ECHO);
    PUMP_UNTIL(F.n_calls == 2);
    gwt_send(&F.cons, "call c %d answered", GWT_M_ECHO);
    PUMP_UNTIL(F.n_calls == 3);
    gwt_send(&F.cons, "send %d ff", GWT_M_FF);
    PUMP_UNTIL(F.ff_copy.struct_size != 0);

    /* A command's writer, kept past its callback. */
    gwt_child q;
    gwt_spawn(&q, "c-tests/gwt_peer", "query", F.status, "grab", (char *)NULL);
    PUMP_UNTIL(F.stale_writer != NULL);
    gwt_wait_exit(&q, F.ln, 10000000);

    /* Replies: released (and a copy), and one still owned. A blocking call
     * needs another thread dispatching the node. */
    GWT_RC(gwipc_node_run_thread(F.dn), GWIPC_OK);
    GWT_RC(gwipc_proxy_call(F.p, GWT_M_ECHO, "r1", 2, 5000000, &F.released, NULL), GWIPC_OK);
    F.released_copy = F.released;
    gwipc_reply_release(&F.released);
    GWT_RC(gwipc_proxy_call(F.p, GWT_M_ECHO, "r2", 2, 5000000, &F.live_reply, NULL), GWIPC_OK);

    /* Closed and freed objects. */
    F.closed_node = gwt_listen(F.other, "closed", NULL);
    gwt_node_close(F.closed_node);
    gwipc_service_id closed = gwt_service("closed");
    GWT_RC(gwipc_node_offer(F.ln, &closed, &op, &F.closed_offer, NULL), GWIPC_OK);
    gwipc_offer_close(F.closed_offer);
    GWT_RC(gwipc_node_require(F.ln, &closed, &pp, &F.closed_proxy, NULL), GWIPC_OK);
    gwipc_proxy_close(F.closed_proxy);
    GWT_RC(gwipc_node_find(F.ln, "gwt.test", 1, 0, NULL, noop_find, NULL, NULL, &F.closed_finder), GWIPC_OK);
    gwipc_finder_close(F.closed_finder);
    GWT_RC(gwipc_config_new(&F.freed_cfg), GWIPC_OK);
    gwipc_config_free(F.freed_cfg);

    /* Loans: one published (and its copy); one whose offer closed. */
    GWT_RC(gwipc_offer_loan(F.o, GWT_EV_PLAIN, 0, &F.done_loan), GWIPC_OK);
    F.done_loan_copy = F.done_loan;
    GWT_RC(gwipc_loan_publish(&F.done_loan, 0), GWIPC_OK);
    gwipc_service_id tmp = gwt_service("tmp");
    gwipc_offer *tmp_offer = NULL;
    GWT_RC(gwipc_node_offer(F.ln, &tmp, &op, &tmp_offer, NULL), GWIPC_OK);
    GWT_RC(gwipc_offer_loan(tmp_offer, GWT_EV_PLAIN, 0, &F.orphan_loan), GWIPC_OK);
    gwipc_offer_close(tmp_offer);

    /* From now on the listener runs on a library thread too. */
    GWT_RC(gwipc_node_run_thread(F.ln), GWIPC_OK);
}

/* ---- Row helpers (a row is one expression returning an int) ---------------- */

/* A failing constructor must leave *out NULL; a succeeding one is undone. */
static int ctor_result(int rc, void **out, void (*undo)(void *))
{
    if (rc == GWIPC_OK && *out && undo)
        undo(*out);
    if (rc < 0 && *out != NULL)
        return OUT_NOT_NULL;
    return rc;
}
static void undo_node(void *n) { gwipc_node_close(n); }
static void undo_offer(void *o) { gwipc_offer_close(o); }
static void undo_proxy(void *p) { gwipc_proxy_close(p); }
static void undo_finder(void *f) { gwipc_finder_close(f); }
static void undo_config(void *c) { gwipc_config_free(c); }

static int listen_(const char *path, const gwipc_config *cfg, gwipc_error *err)
{
    void *n = GARBAGE;
    return ctor_result(gwipc_node_listen(path, cfg, (gwipc_node **)&n, err), &n, undo_node);
}
static int dial_(const char *path)
{
    void *n = GARBAGE;
    return ctor_result(gwipc_node_dial(path, NULL, (gwipc_node **)&n, NULL), &n, undo_node);
}
static int offer_(gwipc_node *node, const gwipc_service_id *svc, const gwipc_offer_params *p)
{
    void *o = GARBAGE;
    return ctor_result(gwipc_node_offer(node, svc, p, (gwipc_offer **)&o, NULL), &o, undo_offer);
}
static int require_(gwipc_node *node, const gwipc_service_id *svc, const gwipc_proxy_params *p)
{
    void *o = GARBAGE;
    return ctor_result(gwipc_node_require(node, svc, p, (gwipc_proxy **)&o, NULL), &o, undo_proxy);
}
static int find_(gwipc_node *node, const char *id, const char *inst, gwipc_find_cb cb)
{
    void *o = GARBAGE;
    return ctor_result(gwipc_node_find(node, id, 1, 0, inst, cb, NULL, NULL, (gwipc_finder **)&o), &o,
                       undo_finder);
}
static int config_new_(void)
{
    void *c = GARBAGE;
    return ctor_result(gwipc_config_new((gwipc_config **)&c), &c, undo_config);
}

/* Offer params with one change. */
static gwipc_offer_params op_size0(void)
{
    gwipc_offer_params p = offer_params();
    p.struct_size = 0;
    return p;
}
static gwipc_offer_params op_huge_size(void)
{
    gwipc_offer_params p = offer_params();
    p.struct_size = 1u << 20;
    return p;
}
static gwipc_offer_params op_no_on_call(void)
{
    gwipc_offer_params p = offer_params();
    p.on_call = NULL;
    return p;
}
static gwipc_offer_params op_bad_field(void)
{
    static const uint16_t bad[] = {7};
    gwipc_offer_params p = offer_params();
    p.fields = bad;
    return p;
}
static gwipc_offer_params op_null_fields(void)
{
    gwipc_offer_params p = offer_params();
    p.fields = NULL;
    return p;
}
static gwipc_proxy_params pp_size0(void)
{
    gwipc_proxy_params p = GWIPC_PROXY_PARAMS_INIT;
    p.struct_size = 0;
    return p;
}

/* A call that fails must zero *reply. */
static int call_(gwipc_proxy *p, uint16_t m, const void *req, size_t len, int64_t t)
{
    gwipc_reply r;
    memset(&r, 0xAA, sizeof r);
    int rc = gwipc_proxy_call(p, m, req, len, t, &r, NULL);
    if (rc == GWIPC_OK || rc == GWIPC_E_APP) {
        gwipc_reply_release(&r);
        return rc;
    }
    static const gwipc_reply zero;
    return memcmp(&r, &zero, sizeof r) == 0 ? rc : NOT_ZEROED;
}

/* gwipc_error: filled on failure (code, message), struct_size respected. */
static int err_filled_on_failure(void)
{
    gwipc_error e = GWIPC_ERROR_INIT;
    gwipc_node *n = NULL;
    int rc = gwipc_node_listen(NULL, NULL, &n, &e);
    return rc < 0 && e.code == rc && e.message[0] ? rc : ERR_NOT_FILLED;
}
static int err_respects_struct_size(void)
{
    gwipc_error e;
    memset(&e, 0x5A, sizeof e);
    e.struct_size = 8; /* an older, smaller gwipc_error: struct_size and code only */
    gwipc_node *n = NULL;
    int rc = gwipc_node_listen(NULL, NULL, &n, &e);
    const unsigned char *b = (const unsigned char *)&e;
    for (size_t i = 8; i < sizeof e; i++)
        if (b[i] != 0x5A)
            return ERR_OVERWRITTEN;
    return rc;
}
static int err_cleared_on_success(void)
{
    gwipc_error e = GWIPC_ERROR_INIT;
    e.code = -99;
    strcpy(e.message, "stale");
    gwipc_node *n = NULL;
    char path[256];
    int rc = gwipc_node_dial(gwt_path(path, sizeof path, "nobody-yet.sock"), NULL, &n, &e);
    if (rc == GWIPC_OK)
        gwipc_node_close(n);
    return rc == GWIPC_OK && (e.code != GWIPC_OK || e.message[0]) ? ERR_NOT_FILLED : rc;
}

/* A second listener where one answers: GWIPC_E_OS with EADDRINUSE. */
static int listen_in_use(void)
{
    gwipc_error e = GWIPC_ERROR_INIT;
    int rc = listen_(F.sock, NULL, &e);
    return rc == GWIPC_E_OS && e.sys_errno != EADDRINUSE ? ERR_NOT_FILLED : rc;
}
/* A regular file at the path is never replaced. */
static int listen_on_regular_file(void)
{
    char path[256];
    FILE *f = fopen(gwt_path(path, sizeof path, "file"), "w");
    if (f)
        fclose(f);
    int rc = listen_(path, NULL, NULL);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? rc : 2000;
}
static int listen_fresh_garbage_out(void)
{
    char path[256];
    return listen_(gwt_path(path, sizeof path, "fresh.sock"), NULL, NULL);
}
static int listen_long_path(void)
{
    char path[300];
    memset(path, 'p', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    return listen_(path, NULL, NULL);
}

/* "Handle values are never reused": 64 configs made and freed, all distinct,
 * all stale. */
static int handles_never_reused(void)
{
    gwipc_config *seen[64];
    for (int i = 0; i < 64; i++) {
        seen[i] = NULL;
        if (gwipc_config_new(&seen[i]) != GWIPC_OK)
            return GWIPC_E_INTERNAL;
        gwipc_config_free(seen[i]);
        for (int j = 0; j < i; j++)
            if (seen[j] == seen[i])
                return HANDLE_REUSED;
    }
    for (int i = 0; i < 64; i++)
        if (gwipc_config_set_name(seen[i], "x") != GWIPC_E_BADHANDLE)
            return gwipc_config_set_name(seen[i], "x");
    return GWIPC_OK;
}

static int status_json_no_len(void)
{
    char *j = NULL;
    int rc = gwipc_node_status_json(F.dn, &j, NULL);
    gwipc_free(j);
    return rc;
}

static int sipc_(const char *path, const void *req, size_t len, char **resp, size_t *rlen)
{
    int rc = gwipc_sipc_query(path, req, len, 2000000, resp, rlen, NULL);
    if (rc == GWIPC_OK && resp)
        gwipc_free(*resp);
    return rc;
}
static int sipc_no_len(void)
{
    char *r = NULL;
    int rc = gwipc_sipc_query(F.status, "ping", 4, 2000000, &r, NULL, NULL);
    gwipc_free(r);
    return rc;
}

/* An oversize reply leaves the call pending: it can then be answered. */
static int reply_too_large_then_fail(void)
{
    static char big[300];
    int rc = gwipc_call_reply(&F.pending, big, sizeof big);
    if (rc != GWIPC_E_TOO_LARGE)
        return rc;
    return gwipc_call_fail(&F.pending, 7, "x", 1) == GWIPC_OK ? rc : STAYED_PENDING;
}

/* An oversize publish through a loan leaves the loan open. */
static int loan_too_large_stays_open(void)
{
    gwipc_loan l = {0};
    int rc = gwipc_offer_loan(F.o, GWT_EV_PLAIN, 0, &l);
    if (rc != GWIPC_OK)
        return rc;
    if (l.capacity < 256 || !l.data)
        return GWIPC_E_INTERNAL;
    rc = gwipc_loan_publish(&l, l.capacity + 1);
    int d = gwipc_loan_discard(&l);
    return d == GWIPC_OK ? rc : STAYED_PENDING;
}
static int loan_discard_twice(void)
{
    gwipc_loan l = {0};
    int rc = gwipc_offer_loan(F.o, GWT_EV_PLAIN, 0, &l);
    if (rc != GWIPC_OK)
        return rc;
    gwipc_loan copy = l;
    if ((rc = gwipc_loan_discard(&l)) != GWIPC_OK)
        return rc;
    rc = gwipc_loan_discard(&copy);
    return rc == gwipc_loan_discard(&l) ? rc : GWIPC_E_INTERNAL;
}
static int kept_release_twice(void)
{
    gwipc_sample_release(&F.kept);
    gwipc_sample_release(&F.kept_copy);
    return 0;
}
static int reply_release_twice(void)
{
    gwipc_reply_release(&F.released);
    gwipc_reply_release(&F.released_copy);
    static gwipc_reply zero;
    gwipc_reply_release(&zero);
    return 0;
}
static int keep_copied_released_reply(void)
{
    gwipc_reply k = {0};
    return gwipc_reply_keep(&F.released_copy, &k);
}
static int keep_live_reply_outside_callback(void)
{
    gwipc_reply k = {0};
    return gwipc_reply_keep(&F.live_reply, &k);
}
static int keep_copied_released_sample(void)
{
    gwipc_sample k = {0};
    return gwipc_sample_keep(&F.kept_copy, &k);
}
static int keep_forged_sample(void)
{
    gwipc_sample s = {sizeof s, 0, 0, 0, 1, NULL, 0, {12345, 678}};
    gwipc_sample k = {0};
    return gwipc_sample_keep(&s, &k);
}
static int reply_forged_call(void)
{
    gwipc_call c = {sizeof c, 0, 0, 0, 1, NULL, 0, {987654, 321}};
    return gwipc_call_reply(&c, "x", 1);
}
static int writer_outside_callback(void) { return gwipc_writer_write(F.stale_writer, "x", 1); }
static int builtin_replaced_once(void)
{
    int first = gwipc_node_handle_command(F.ln, "ping", noop_cmd, NULL, NULL);
    int second = gwipc_node_handle_command(F.ln, "ping", noop_cmd, NULL, NULL);
    return first == GWIPC_OK ? second : first;
}
static int command_twice(void)
{
    int first = gwipc_node_handle_command(F.ln, "twice", noop_cmd, NULL, NULL);
    int second = gwipc_node_handle_command(F.ln, "twice", noop_cmd, NULL, NULL);
    return first == GWIPC_OK ? second : first;
}
static int subscribe_bad_mode(void) { return gwipc_proxy_subscribe(F.p, GWT_EV_FIELD, 7, noop_sample, NULL, NULL); }
static int state_null(void) { return gwipc_proxy_subscription_state(F.p, GWT_EV_PLAIN, NULL); }
static int state_unsubscribed(void)
{
    int s;
    return gwipc_proxy_subscription_state(F.p, GWT_EV_FIELD, &s);
}
static int peer_userdata_get_unknown(void)
{
    void *u = NULL;
    return gwipc_node_get_peer_userdata(F.ln, 999999, &u);
}
static int status_json_(gwipc_node *n, char **j, size_t *l)
{
    int rc = gwipc_node_status_json(n, j, l);
    if (rc == GWIPC_OK && j)
        gwipc_free(*j);
    return rc;
}
static int rule_size0(void)
{
    gwipc_rule r = GWIPC_RULE_INIT;
    r.struct_size = 0;
    return gwipc_config_add_rule(F.cfg, &r);
}
static int limits_size0(void)
{
    gwipc_limits l = GWIPC_LIMITS_INIT;
    l.struct_size = 0;
    return gwipc_config_set_limits(F.cfg, &l);
}
static int compat_(uint16_t omaj, uint16_t omin, const char *oi, uint16_t wmaj, uint16_t wmin, const char *wi)
{
    gwipc_service_id o = {"gwt.test", omaj, omin, oi}, w = {"gwt.test", wmaj, wmin, wi};
    return gwipc_service_compatible(&o, &w);
}
static int reply_with_null_data(void) { return gwipc_call_reply(&F.pending2, NULL, 5); }

/* ---- The table -------------------------------------------------------------- */

static const gwipc_geometry g256 = {256, 4};
static gwipc_reply reply_out;
static gwipc_loan loan_out;
static gwipc_sample sample_out;
static int int_out;
static char *str_out;
static size_t len_out;
static void *ptr_out;

/* X(name, want, expression) */
#define ROWS(X)                                                                                              \
    /* free, services */                                                                                     \
    X(free_null, NO_CRASH, (gwipc_free(NULL), 0))                                                            \
    X(validate_null, IS(GWIPC_E_INVAL), gwipc_service_validate(NULL))                                        \
    X(validate_ok, IS(GWIPC_OK), gwipc_service_validate(SVC("gwt.test", "one")))                             \
    X(validate_id64_ok, IS(GWIPC_OK), gwipc_service_validate(SVC(ID64, "one")))                              \
    X(validate_null_id, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC(NULL, "x"))) \
    X(validate_null_instance, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_SERVICE),                                \
      gwipc_service_validate(SVC("gwt.test", NULL)))                                                         \
    X(validate_empty_id, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("", "one")))                \
    X(validate_id65, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC(ID65, "one")))                  \
    X(validate_space, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("gwt test", "one")))           \
    X(validate_control, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("gwt\ttest", "one")))        \
    X(validate_bad_utf8, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("gwt\xff\xfe", "one")))     \
    X(validate_star_instance, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("gwt.test", "*")))     \
    X(validate_empty_instance, IS(GWIPC_E_INVALID_SERVICE), gwipc_service_validate(SVC("gwt.test", "")))     \
    X(compatible_null_offered, ANY_ERROR, gwipc_service_compatible(NULL, SVC("a", "b")))                      \
    X(compatible_null_wanted, ANY_ERROR, gwipc_service_compatible(SVC("a", "b"), NULL))                       \
    X(compatible_same, IS(1), compat_(1, 2, "i", 1, 2, "i"))                                                 \
    X(compatible_older_minor, IS(1), compat_(1, 2, "i", 1, 1, "i"))                                          \
    X(compatible_newer_minor, IS(0), compat_(1, 2, "i", 1, 3, "i"))                                          \
    X(compatible_other_major, IS(0), compat_(2, 2, "i", 1, 2, "i"))                                          \
    X(compatible_other_instance, IS(0), compat_(1, 2, "i", 1, 2, "j"))                                       \
    /* configuration */                                                                                      \
    X(config_new_null, IS(GWIPC_E_INVAL), gwipc_config_new(NULL))                                            \
    X(config_new_garbage_out_ok, IS(GWIPC_OK), config_new_())                                                \
    X(config_free_null, NO_CRASH, (gwipc_config_free(NULL), 0))                                              \
    X(config_free_twice, NO_CRASH, (gwipc_config_free(F.freed_cfg), 0))                                      \
    X(set_name_null_cfg, IS(GWIPC_E_INVAL), gwipc_config_set_name(NULL, "x"))                                \
    X(set_name_null, IS(GWIPC_E_INVAL), gwipc_config_set_name(F.cfg, NULL))                                  \
    X(set_name_65, IS(GWIPC_E_INVAL), gwipc_config_set_name(F.cfg, ID65))                                    \
    X(set_name_freed, IS(GWIPC_E_BADHANDLE), gwipc_config_set_name(F.freed_cfg, "x"))                        \
    X(set_name_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_config_set_name((gwipc_config *)(void *)F.ln, "x"))  \
    X(set_name_forged, IS(GWIPC_E_BADHANDLE), gwipc_config_set_name((gwipc_config *)(void *)forged, "x"))    \
    X(set_socket_mode_null, IS(GWIPC_E_INVAL), gwipc_config_set_socket_mode(NULL, 0600))                     \
    X(set_socket_mode_not_perm, IS(GWIPC_E_INVAL), gwipc_config_set_socket_mode(F.cfg, 04600))               \
    X(set_max_packet_null, IS(GWIPC_E_INVAL), gwipc_config_set_max_packet(NULL, 4096))                       \
    X(set_max_packet_low, IS(GWIPC_E_INVAL), gwipc_config_set_max_packet(F.cfg, 4095))                       \
    X(set_max_packet_high, IS(GWIPC_E_INVAL), gwipc_config_set_max_packet(F.cfg, 65537))                     \
    X(set_max_packet_ok, IS(GWIPC_OK), gwipc_config_set_max_packet(F.cfg, 4096))                             \
    X(set_handshake_null, IS(GWIPC_E_INVAL), gwipc_config_set_handshake_timeout(NULL, 1000))                 \
    X(set_handshake_negative, IS(GWIPC_E_INVAL), gwipc_config_set_handshake_timeout(F.cfg, -5))              \
    X(set_handshake_forever, IS(GWIPC_E_INVAL), gwipc_config_set_handshake_timeout(F.cfg, GWIPC_FOREVER))    \
    X(set_reconnect_inverted, IS(GWIPC_E_INVAL), gwipc_config_set_reconnect(F.cfg, 2000, 1000))              \
    X(set_spin_forever, IS(GWIPC_E_INVAL), gwipc_config_set_spin(F.cfg, GWIPC_FOREVER))                      \
    X(set_reconnect_null, IS(GWIPC_E_INVAL), gwipc_config_set_reconnect(NULL, 1000, 2000))                   \
    X(set_reconnect_negative, IS(GWIPC_E_INVAL), gwipc_config_set_reconnect(F.cfg, -5, 2000))                \
    X(set_spin_null, IS(GWIPC_E_INVAL), gwipc_config_set_spin(NULL, 100))                                    \
    X(set_spin_negative, IS(GWIPC_E_INVAL), gwipc_config_set_spin(F.cfg, -1))                                \
    X(set_spin_over_a_second, IS(GWIPC_E_INVAL), gwipc_config_set_spin(F.cfg, 1000001))                      \
    X(set_spin_ok, IS(GWIPC_OK), gwipc_config_set_spin(F.cfg, 1000000))                                      \
    X(set_rings_null, IS(GWIPC_E_INVAL), gwipc_config_set_rings(NULL, 64))                                   \
    X(set_rings_too_few, IS(GWIPC_E_INVAL), gwipc_config_set_rings(F.cfg, 32))                               \
    X(set_rings_not_a_power_of_two, IS(GWIPC_E_INVAL), gwipc_config_set_rings(F.cfg, 100))                   \
    X(set_rings_too_many, IS(GWIPC_E_INVAL), gwipc_config_set_rings(F.cfg, 131072))                          \
    X(set_rings_off, IS(GWIPC_OK), gwipc_config_set_rings(F.cfg, 0))                                         \
    X(set_max_output_null, IS(GWIPC_E_INVAL), gwipc_config_set_max_output(NULL, 1 << 20))                    \
    X(set_max_peers_null, IS(GWIPC_E_INVAL), gwipc_config_set_max_peers(NULL, 10, 10))                       \
    X(set_limits_null_cfg, IS(GWIPC_E_INVAL), gwipc_config_set_limits(NULL, &(gwipc_limits)GWIPC_LIMITS_INIT)) \
    X(set_limits_null, IS(GWIPC_E_INVAL), gwipc_config_set_limits(F.cfg, NULL))                              \
    X(set_limits_size0, IS(GWIPC_E_INVAL), limits_size0())                                                   \
    X(add_pool_null_cfg, IS(GWIPC_E_INVAL), gwipc_config_add_pool(NULL, "gwt.test", NULL, 0, g256))          \
    X(add_pool_null_service, IS(GWIPC_E_INVAL), gwipc_config_add_pool(F.cfg, NULL, NULL, 0, g256))           \
    X(add_pool_bad_kind, IS(GWIPC_E_INVAL), gwipc_config_add_pool(F.cfg, "gwt.test", NULL, 7, g256))         \
    X(allow_uid_null, IS(GWIPC_E_INVAL), gwipc_config_allow_uid(NULL, 0))                                    \
    X(allow_gid_null, IS(GWIPC_E_INVAL), gwipc_config_allow_gid(NULL, 0))                                    \
    X(require_listener_uid_null, IS(GWIPC_E_INVAL), gwipc_config_require_listener_uid(NULL, 0))              \
    X(add_rule_null_cfg, IS(GWIPC_E_INVAL), gwipc_config_add_rule(NULL, &(gwipc_rule)GWIPC_RULE_INIT))       \
    X(add_rule_null, IS(GWIPC_E_INVAL), gwipc_config_add_rule(F.cfg, NULL))                                  \
    X(add_rule_size0, IS(GWIPC_E_INVAL), rule_size0())                                                       \
    X(set_peer_callbacks_null, IS(GWIPC_E_INVAL), gwipc_config_set_peer_callbacks(NULL, NULL, NULL, NULL, NULL)) \
    X(set_authorize_null, IS(GWIPC_E_INVAL), gwipc_config_set_authorize(NULL, NULL, NULL, NULL))             \
    X(set_log_callback_null, IS(GWIPC_E_INVAL), gwipc_config_set_log_callback(NULL, 0, NULL, NULL, NULL))    \
    X(set_log_fd_null, IS(GWIPC_E_INVAL), gwipc_config_set_log_fd(NULL, 2, 0))                               \
    X(set_log_fd_bad_fd, ONE_OF(GWIPC_E_INVAL, GWIPC_E_OS), gwipc_config_set_log_fd(F.cfg, 9999, 0))         \
    X(set_status_path_null_cfg, IS(GWIPC_E_INVAL), gwipc_config_set_status_path(NULL, "x", 0))               \
    X(set_status_path_null_ok, IS(GWIPC_OK), gwipc_config_set_status_path(F.cfg, NULL, 0))                   \
    /* errors */                                                                                             \
    X(error_filled_on_failure, IS(GWIPC_E_INVAL), err_filled_on_failure())                                   \
    X(error_respects_struct_size, IS(GWIPC_E_INVAL), err_respects_struct_size())                             \
    X(error_cleared_on_success, IS(GWIPC_OK), err_cleared_on_success())                                      \
    /* nodes */                                                                                              \
    X(listen_null_path, IS(GWIPC_E_INVAL), listen_(NULL, NULL, NULL))                                        \
    X(listen_null_out, IS(GWIPC_E_INVAL), gwipc_node_listen(F.other, NULL, NULL, NULL))                      \
    X(listen_freed_cfg, IS(GWIPC_E_BADHANDLE), listen_(F.other, F.freed_cfg, NULL))                          \
    X(listen_in_use, IS(GWIPC_E_OS), listen_in_use())                                                        \
    X(listen_regular_file, ANY_ERROR, listen_on_regular_file())                                              \
    X(listen_path_too_long, ANY_ERROR, listen_long_path())                                                   \
    X(listen_garbage_out_ok, IS(GWIPC_OK), listen_fresh_garbage_out())                                       \
    X(dial_garbage_out_ok, IS(GWIPC_OK), dial_(F.sock))                                                      \
    X(dial_null_path, IS(GWIPC_E_INVAL), dial_(NULL))                                                        \
    X(dial_null_out, IS(GWIPC_E_INVAL), gwipc_node_dial(F.sock, NULL, NULL, NULL))                           \
    X(node_close_null, NO_CRASH, (gwipc_node_close(NULL), 0))                                                \
    X(node_close_twice, NO_CRASH, (gwipc_node_close(F.closed_node), 0))                                      \
    X(node_close_forged, NO_CRASH, (gwipc_node_close(FORGED_NODE), 0))                                       \
    X(shutdown_null, IS(GWIPC_E_INVAL), gwipc_node_shutdown(NULL, 0))                                        \
    X(shutdown_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_shutdown(F.closed_node, 0))                         \
    X(fd_null, IS(GWIPC_E_INVAL), gwipc_node_fd(NULL))                                                       \
    X(fd_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_fd(F.closed_node))                                        \
    X(fd_forged, IS(GWIPC_E_BADHANDLE), gwipc_node_fd(FORGED_NODE))                                          \
    X(fd_wrong_kind_offer, IS(GWIPC_E_BADHANDLE), gwipc_node_fd((gwipc_node *)(void *)F.o))                  \
    X(fd_wrong_kind_config, IS(GWIPC_E_BADHANDLE), gwipc_node_fd((gwipc_node *)(void *)F.cfg))               \
    X(dispatch_null, IS(GWIPC_E_INVAL), gwipc_node_dispatch(NULL, 0))                                        \
    X(dispatch_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_dispatch(F.closed_node, 0))                         \
    X(dispatch_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_node_dispatch((gwipc_node *)(void *)F.p, 0))         \
    X(dispatch_while_run_thread, IS(GWIPC_E_BUSY), gwipc_node_dispatch(F.ln, 0))                             \
    X(run_while_run_thread, IS(GWIPC_E_BUSY), gwipc_node_run(F.ln))                                          \
    X(run_thread_twice, IS(GWIPC_E_BUSY), gwipc_node_run_thread(F.ln))                                       \
    X(wait_null, IS(GWIPC_E_INVAL), gwipc_node_wait(NULL, 0))                                                \
    X(wait_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_wait(F.closed_node, 0))                                 \
    X(post_null, IS(GWIPC_E_INVAL), gwipc_node_post(NULL, noop_post, NULL, NULL))                            \
    X(post_null_fn, IS(GWIPC_E_INVAL), gwipc_node_post(F.ln, NULL, NULL, NULL))                              \
    X(post_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_post(F.closed_node, noop_post, NULL, NULL))             \
    X(run_null, IS(GWIPC_E_INVAL), gwipc_node_run(NULL))                                                     \
    X(run_thread_null, IS(GWIPC_E_INVAL), gwipc_node_run_thread(NULL))                                       \
    X(stop_null, IS(GWIPC_E_INVAL), gwipc_node_stop(NULL))                                                   \
    X(stop_closed, IS(GWIPC_E_BADHANDLE), gwipc_node_stop(F.closed_node))                                    \
    X(status_json_null_node, IS(GWIPC_E_INVAL), status_json_(NULL, &str_out, &len_out))                      \
    X(status_json_null_json, IS(GWIPC_E_INVAL), status_json_(F.dn, NULL, &len_out))                          \
    X(status_json_null_len_ok, IS(GWIPC_OK), status_json_no_len())                                           \
    X(status_json_closed, IS(GWIPC_E_BADHANDLE), status_json_(F.closed_node, &str_out, &len_out))            \
    X(set_peer_userdata_null, IS(GWIPC_E_INVAL), gwipc_node_set_peer_userdata(NULL, 1, NULL))                \
    X(set_peer_userdata_unknown, IS(GWIPC_E_NOTFOUND), gwipc_node_set_peer_userdata(F.ln, 999999, NULL))     \
    X(get_peer_userdata_null, IS(GWIPC_E_INVAL), gwipc_node_get_peer_userdata(NULL, 1, &ptr_out))            \
    X(get_peer_userdata_null_out, IS(GWIPC_E_INVAL), gwipc_node_get_peer_userdata(F.ln, 1, NULL))            \
    X(get_peer_userdata_unknown, IS(GWIPC_E_NOTFOUND), peer_userdata_get_unknown())                          \
    X(handles_never_reused, IS(GWIPC_OK), handles_never_reused())                                            \
    /* commands */                                                                                           \
    X(command_null_node, IS(GWIPC_E_INVAL), gwipc_node_handle_command(NULL, "x", noop_cmd, NULL, NULL))      \
    X(command_null_name, IS(GWIPC_E_INVAL), gwipc_node_handle_command(F.ln, NULL, noop_cmd, NULL, NULL))     \
    X(command_null_cb, IS(GWIPC_E_INVAL), gwipc_node_handle_command(F.ln, "x", NULL, NULL, NULL))            \
    X(command_space, IS(GWIPC_E_INVALID_CONFIG), gwipc_node_handle_command(F.ln, "a b", noop_cmd, NULL, NULL)) \
    X(command_65, IS(GWIPC_E_INVALID_CONFIG), gwipc_node_handle_command(F.ln, ID65, noop_cmd, NULL, NULL))   \
    X(command_empty, IS(GWIPC_E_INVALID_CONFIG), gwipc_node_handle_command(F.ln, "", noop_cmd, NULL, NULL))  \
    X(command_no_endpoint, IS(GWIPC_E_INVALID_CONFIG), gwipc_node_handle_command(F.dn, "x", noop_cmd, NULL, NULL)) \
    X(command_twice, IS(GWIPC_E_DUPLICATE), command_twice())                                                 \
    X(command_builtin_replaced_once, IS(GWIPC_E_DUPLICATE), builtin_replaced_once())                         \
    X(writer_null, IS(GWIPC_E_INVAL), gwipc_writer_write(NULL, "x", 1))                                      \
    X(writer_null_data, IS(GWIPC_E_INVAL), writer_null_data_rc)                                              \
    X(writer_outside_callback, IS(GWIPC_E_BADHANDLE), writer_outside_callback())                             \
    X(writer_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_writer_write((gwipc_writer *)(void *)F.ln, "x", 1))    \
    /* offers */                                                                                             \
    X(offer_null_node, IS(GWIPC_E_INVAL), offer_(NULL, SVC("gwt.o", "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_null_svc, IS(GWIPC_E_INVAL), offer_(F.ln, NULL, &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT))  \
    X(offer_null_params, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "a"), NULL)) \
    X(offer_null_out, IS(GWIPC_E_INVAL),                                                                     \
      gwipc_node_offer(F.ln, SVC("gwt.o", "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT, NULL, NULL))   \
    X(offer_closed_node, IS(GWIPC_E_BADHANDLE),                                                              \
      offer_(F.closed_node, SVC("gwt.o", "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT))                \
    X(offer_wrong_kind, IS(GWIPC_E_BADHANDLE),                                                               \
      offer_((gwipc_node *)(void *)F.p, SVC("gwt.o", "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT))    \
    X(offer_params_size0, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "b"), &(gwipc_offer_params){0})) \
    X(offer_params_size0_full, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "c"), &(gwipc_offer_params[]){op_size0()}[0])) \
    X(offer_params_size_huge, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "d"), &(gwipc_offer_params[]){op_huge_size()}[0])) \
    X(offer_methods_without_on_call, IS(GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "e"), &(gwipc_offer_params[]){op_no_on_call()}[0])) \
    X(offer_field_out_of_range, IS(GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "f"), &(gwipc_offer_params[]){op_bad_field()}[0])) \
    X(offer_fields_null_with_count, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), offer_(F.ln, SVC("gwt.o", "g"), &(gwipc_offer_params[]){op_null_fields()}[0])) \
    X(offer_duplicate, IS(GWIPC_E_DUPLICATE), offer_(F.ln, &(gwipc_service_id){"gwt.test", 1, 2, "one"}, &(gwipc_offer_params[]){offer_params()}[0])) \
    X(offer_empty_id, IS(GWIPC_E_INVALID_SERVICE), offer_(F.ln, SVC("", "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_id65, IS(GWIPC_E_INVALID_SERVICE), offer_(F.ln, SVC(ID65, "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_star_instance, IS(GWIPC_E_INVALID_SERVICE), offer_(F.ln, SVC("gwt.o", "*"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_space_instance, IS(GWIPC_E_INVALID_SERVICE), offer_(F.ln, SVC("gwt.o", "a b"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_null_id, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_SERVICE), offer_(F.ln, SVC(NULL, "a"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_garbage_out_ok, IS(GWIPC_OK), offer_(F.ln, SVC("gwt.o", "ok"), &(gwipc_offer_params)GWIPC_OFFER_PARAMS_INIT)) \
    X(offer_close_null, NO_CRASH, (gwipc_offer_close(NULL), 0))                                              \
    X(offer_close_twice, NO_CRASH, (gwipc_offer_close(F.closed_offer), 0))                                   \
    X(offer_close_wrong_kind, NO_CRASH, (gwipc_offer_close((gwipc_offer *)(void *)F.p), 0))                  \
    X(offer_still_usable_after_wrong_close, IS(GWIPC_OK), gwipc_proxy_is_available(F.p) == 1 ? 0 : -1)       \
    X(publish_null, IS(GWIPC_E_INVAL), gwipc_offer_publish(NULL, 0, "x", 1, 0))                              \
    X(publish_closed, IS(GWIPC_E_BADHANDLE), gwipc_offer_publish(F.closed_offer, 0, "x", 1, 0))              \
    X(publish_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_offer_publish((gwipc_offer *)(void *)F.p, 0, "x", 1, 0)) \
    X(publish_unknown_event, IS(GWIPC_E_UNKNOWN_EVENT), gwipc_offer_publish(F.o, 99, "x", 1, 0))             \
    X(publish_null_data, IS(GWIPC_E_INVAL), gwipc_offer_publish(F.o, 0, NULL, 5, 0))                         \
    X(publish_empty_ok, IS(GWIPC_OK), gwipc_offer_publish(F.o, 0, NULL, 0, 0))                               \
    X(publish_too_large, IS(GWIPC_E_TOO_LARGE), gwipc_offer_publish(F.o, 0, (char[257]){0}, 257, 0))         \
    X(publish_slot_size_ok, IS(GWIPC_OK), gwipc_offer_publish(F.o, 0, (char[256]){0}, 256, 0))               \
    X(publish_wait_too_large, IS(GWIPC_E_TOO_LARGE), gwipc_offer_publish(F.o, 0, (char[300]){0}, 300, 100000)) \
    X(loan_null_offer, IS(GWIPC_E_INVAL), gwipc_offer_loan(NULL, 0, 0, &loan_out))                           \
    X(loan_null_loan, IS(GWIPC_E_INVAL), gwipc_offer_loan(F.o, 0, 0, NULL))                                  \
    X(loan_unknown_event, IS(GWIPC_E_UNKNOWN_EVENT), gwipc_offer_loan(F.o, 99, 0, &loan_out))                \
    X(loan_closed_offer, IS(GWIPC_E_BADHANDLE), gwipc_offer_loan(F.closed_offer, 0, 0, &loan_out))           \
    X(loan_publish_null, IS(GWIPC_E_INVAL), gwipc_loan_publish(NULL, 0))                                     \
    X(loan_publish_used, ONE_OF(GWIPC_E_LOAN_DONE, GWIPC_E_BADHANDLE), gwipc_loan_publish(&F.done_loan, 1))  \
    X(loan_publish_used_copy, ONE_OF(GWIPC_E_LOAN_DONE, GWIPC_E_BADHANDLE), gwipc_loan_publish(&F.done_loan_copy, 1)) \
    X(loan_publish_zeroed, ONE_OF(GWIPC_E_LOAN_DONE, GWIPC_E_BADHANDLE), gwipc_loan_publish(&(gwipc_loan){0}, 1)) \
    X(loan_publish_offer_closed, IS(GWIPC_E_CLOSED), gwipc_loan_publish(&F.orphan_loan, 1))                  \
    X(loan_publish_too_large_stays_open, IS(GWIPC_E_TOO_LARGE), loan_too_large_stays_open())                 \
    X(loan_discard_null, IS(GWIPC_E_INVAL), gwipc_loan_discard(NULL))                                        \
    X(loan_discard_twice, IS(GWIPC_E_LOAN_DONE), loan_discard_twice())                                       \
    X(loan_discard_used, IS(GWIPC_E_LOAN_DONE), gwipc_loan_discard(&F.done_loan))                            \
    /* received calls */                                                                                     \
    X(call_reply_null, IS(GWIPC_E_INVAL), gwipc_call_reply(NULL, "x", 1))                                    \
    X(call_fail_null, IS(GWIPC_E_INVAL), gwipc_call_fail(NULL, 1, "x", 1))                                   \
    X(call_is_cancelled_null, IS(GWIPC_E_INVAL), gwipc_call_is_cancelled(NULL))                              \
    X(call_is_cancelled_pending, IS(0), gwipc_call_is_cancelled(&F.pending))                                 \
    X(call_reply_null_data, IS(GWIPC_E_INVAL), reply_with_null_data())                                       \
    X(call_reply_too_large_stays_pending, IS(GWIPC_E_TOO_LARGE), reply_too_large_then_fail())                \
    X(call_reply_answered_copy, IS(GWIPC_E_CALL_DONE), gwipc_call_reply(&F.answered_copy, "x", 1))           \
    X(call_fail_answered_copy, IS(GWIPC_E_CALL_DONE), gwipc_call_fail(&F.answered_copy, 1, NULL, 0))         \
    X(call_reply_twice, IS(GWIPC_E_CALL_DONE), gwipc_call_reply(&F.pending, "x", 1))                         \
    X(call_is_cancelled_answered, ANY_ERROR, gwipc_call_is_cancelled(&F.answered_copy))                      \
    X(call_reply_ff_after_callback, ONE_OF(GWIPC_E_BADHANDLE, GWIPC_E_CALL_DONE), gwipc_call_reply(&F.ff_copy, "x", 1)) \
    X(call_reply_forged, IS(GWIPC_E_BADHANDLE), reply_forged_call())                                         \
    X(call_reply_zeroed, ONE_OF(GWIPC_E_BADHANDLE, GWIPC_E_INVAL), gwipc_call_reply(&(gwipc_call){0}, "x", 1)) \
    X(call_fail_null_data, IS(GWIPC_E_INVAL), gwipc_call_fail(&F.pending2, 1, NULL, 5))                      \
    X(call_reply_pending2_ok, IS(GWIPC_OK), gwipc_call_reply(&F.pending2, "late", 4))                        \
    /* proxies */                                                                                            \
    X(require_null_node, IS(GWIPC_E_INVAL), require_(NULL, SVC("gwt.r", "a"), PP))                         \
    X(require_null_svc, IS(GWIPC_E_INVAL), require_(F.dn, NULL, PP))                                       \
    X(require_null_out, IS(GWIPC_E_INVAL), gwipc_node_require(F.dn, SVC("gwt.r", "a"), PP, NULL, NULL))    \
    X(require_null_params, ONE_OF(GWIPC_OK, GWIPC_E_INVAL), require_(F.dn, SVC("gwt.r", "b"), NULL))         \
    X(require_params_size0, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), require_(F.dn, SVC("gwt.r", "c"), &(gwipc_proxy_params[]){pp_size0()}[0])) \
    X(require_duplicate, IS(GWIPC_E_DUPLICATE), require_(F.dn, &(gwipc_service_id){"gwt.test", 1, 2, "one"}, PP)) \
    X(require_closed_node, IS(GWIPC_E_BADHANDLE), require_(F.closed_node, SVC("gwt.r", "a"), PP))          \
    X(require_star_instance, IS(GWIPC_E_INVALID_SERVICE), require_(F.dn, SVC("gwt.r", "*"), PP))           \
    X(require_bad_utf8, IS(GWIPC_E_INVALID_SERVICE), require_(F.dn, SVC("gwt\xc3", "a"), PP))              \
    X(require_id65, IS(GWIPC_E_INVALID_SERVICE), require_(F.dn, SVC(ID65, "a"), PP))                       \
    X(require_garbage_out_ok, IS(GWIPC_OK), require_(F.dn, SVC("gwt.r", "ok"), PP))                           \
    X(proxy_close_null, NO_CRASH, (gwipc_proxy_close(NULL), 0))                                              \
    X(proxy_close_twice, NO_CRASH, (gwipc_proxy_close(F.closed_proxy), 0))                                   \
    X(proxy_close_wrong_kind, NO_CRASH, (gwipc_proxy_close((gwipc_proxy *)(void *)F.o), 0))                  \
    X(available_null, IS(GWIPC_E_INVAL), gwipc_proxy_is_available(NULL))                                     \
    X(available_closed, IS(GWIPC_E_BADHANDLE), gwipc_proxy_is_available(F.closed_proxy))                     \
    X(available_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_proxy_is_available((gwipc_proxy *)(void *)F.o))     \
    X(available_wrong_kind_finder, IS(GWIPC_E_BADHANDLE), gwipc_proxy_is_available((gwipc_proxy *)(void *)F.fi)) \
    X(available_ok, IS(1), gwipc_proxy_is_available(F.p))                                                    \
    X(subscribe_null, IS(GWIPC_E_INVAL), gwipc_proxy_subscribe(NULL, 0, 0, noop_sample, NULL, NULL))         \
    X(subscribe_null_cb, IS(GWIPC_E_INVAL), gwipc_proxy_subscribe(F.p, 1, 0, NULL, NULL, NULL))              \
    X(subscribe_bad_mode, IS(GWIPC_E_INVAL), subscribe_bad_mode())                                           \
    X(subscribe_unknown_event, IS(GWIPC_E_UNKNOWN_EVENT), gwipc_proxy_subscribe(F.p, 99, 0, noop_sample, NULL, NULL)) \
    X(subscribe_closed, IS(GWIPC_E_BADHANDLE), gwipc_proxy_subscribe(F.closed_proxy, 0, 0, noop_sample, NULL, NULL)) \
    X(subscribe_wrong_kind, IS(GWIPC_E_BADHANDLE), gwipc_proxy_subscribe((gwipc_proxy *)(void *)F.fi, 0, 0, noop_sample, NULL, NULL)) \
    X(unsubscribe_null, IS(GWIPC_E_INVAL), gwipc_proxy_unsubscribe(NULL, 0))                                 \
    X(unsubscribe_not_subscribed, IS(GWIPC_OK), gwipc_proxy_unsubscribe(F.p, GWT_EV_FIELD))                  \
    X(unsubscribe_closed, IS(GWIPC_E_BADHANDLE), gwipc_proxy_unsubscribe(F.closed_proxy, 0))                 \
    X(state_null_proxy, IS(GWIPC_E_INVAL), gwipc_proxy_subscription_state(NULL, 0, &int_out))                \
    X(state_null_out, IS(GWIPC_E_INVAL), state_null())                                                       \
    X(state_not_subscribed, IS(GWIPC_E_NOTFOUND), state_unsubscribed())                                      \
    X(request_update_null, IS(GWIPC_E_INVAL), gwipc_proxy_request_update(NULL, 1))                           \
    X(request_update_not_subscribed, ANY_ERROR, gwipc_proxy_request_update(F.p, GWT_EV_FIELD))               \
    X(request_update_unavailable, ANY_ERROR, gwipc_proxy_request_update(F.p_nobody, GWT_EV_FIELD))           \
    X(sample_keep_null, IS(GWIPC_E_INVAL), gwipc_sample_keep(NULL, &sample_out))                             \
    X(sample_keep_null_out, IS(GWIPC_E_INVAL), gwipc_sample_keep(&F.kept_copy, NULL))                        \
    X(sample_keep_released_copy, IS(GWIPC_E_BADHANDLE), keep_copied_released_sample())                       \
    X(sample_keep_forged, IS(GWIPC_E_BADHANDLE), keep_forged_sample())                                       \
    X(sample_release_null, NO_CRASH, (gwipc_sample_release(NULL), 0))                                        \
    X(sample_release_twice_and_copy, NO_CRASH, kept_release_twice())                                         \
    X(sample_release_forged, NO_CRASH, (gwipc_sample_release(&(gwipc_sample){sizeof(gwipc_sample), 0, 0, 1, 9, NULL, 0, {1, 2}}), 0)) \
    X(call_null_proxy, IS(GWIPC_E_INVAL), gwipc_proxy_call(NULL, 0, "x", 1, 1000, &reply_out, NULL))         \
    X(call_null_reply, IS(GWIPC_E_INVAL), gwipc_proxy_call(F.p, 0, "x", 1, 1000000, NULL, NULL))             \
    X(call_null_request, IS(GWIPC_E_INVAL), call_(F.p, GWT_M_ECHO, NULL, 3, 1000000))                        \
    X(call_ok, IS(GWIPC_OK), call_(F.p, GWT_M_ECHO, "x", 1, 5000000))                                        \
    X(call_empty_ok, IS(GWIPC_OK), call_(F.p, GWT_M_ECHO, NULL, 0, 5000000))                                 \
    X(call_unknown_method, IS(GWIPC_E_UNKNOWN_METHOD), call_(F.p, 99, "x", 1, 5000000))                      \
    X(call_too_large, IS(GWIPC_E_TOO_LARGE), call_(F.p, GWT_M_ECHO, (char[300]){0}, 300, 5000000))           \
    X(call_unavailable_no_wait, ONE_OF(GWIPC_E_NOT_AVAILABLE, GWIPC_E_TIMEOUT), call_(F.p_nobody, 0, "x", 1, 0)) \
    X(call_unavailable_wait, ONE_OF(GWIPC_E_NOT_AVAILABLE, GWIPC_E_TIMEOUT), call_(F.p_nobody, 0, "x", 1, 50000)) \
    X(call_closed, IS(GWIPC_E_BADHANDLE), call_(F.closed_proxy, 0, "x", 1, 1000))                            \
    X(call_wrong_kind, IS(GWIPC_E_BADHANDLE), call_((gwipc_proxy *)(void *)F.o, 0, "x", 1, 1000))            \
    X(call_async_null, IS(GWIPC_E_INVAL), gwipc_proxy_call_async(NULL, 0, "x", 1, 0, noop_reply, NULL, NULL, NULL)) \
    X(call_async_null_cb, ONE_OF(GWIPC_E_INVAL, GWIPC_E_INVALID_CONFIG), gwipc_proxy_call_async(F.p, 0, "x", 1, 0, NULL, NULL, NULL, NULL)) \
    X(call_async_null_request, IS(GWIPC_E_INVAL), gwipc_proxy_call_async(F.p, 0, NULL, 3, 0, noop_reply, NULL, NULL, NULL)) \
    X(call_async_unknown_method, IS(GWIPC_E_UNKNOWN_METHOD), gwipc_proxy_call_async(F.p, 99, "x", 1, 0, noop_reply, NULL, NULL, NULL)) \
    X(call_async_too_large, IS(GWIPC_E_TOO_LARGE), gwipc_proxy_call_async(F.p, 0, (char[300]){0}, 300, 0, noop_reply, NULL, NULL, NULL)) \
    X(call_async_unavailable, IS(GWIPC_E_NOT_AVAILABLE), gwipc_proxy_call_async(F.p_nobody, 0, "x", 1, 0, noop_reply, NULL, NULL, NULL)) \
    X(call_async_closed, IS(GWIPC_E_BADHANDLE), gwipc_proxy_call_async(F.closed_proxy, 0, "x", 1, 0, noop_reply, NULL, NULL, NULL)) \
    X(send_null, IS(GWIPC_E_INVAL), gwipc_proxy_send(NULL, 0, "x", 1))                                       \
    X(send_null_request, IS(GWIPC_E_INVAL), gwipc_proxy_send(F.p, GWT_M_FF, NULL, 3))                        \
    X(send_unknown_method, IS(GWIPC_E_UNKNOWN_METHOD), gwipc_proxy_send(F.p, 99, "x", 1))                    \
    X(send_unavailable, IS(GWIPC_E_NOT_AVAILABLE), gwipc_proxy_send(F.p_nobody, 0, "x", 1))                  \
    X(send_too_large, IS(GWIPC_E_TOO_LARGE), gwipc_proxy_send(F.p, GWT_M_FF, (char[300]){0}, 300))           \
    X(cancel_null, IS(GWIPC_E_INVAL), gwipc_proxy_cancel(NULL, 1))                                           \
    X(cancel_unknown, IS(GWIPC_E_NOTFOUND), gwipc_proxy_cancel(F.p, 987654321))                              \
    X(cancel_closed, IS(GWIPC_E_BADHANDLE), gwipc_proxy_cancel(F.closed_proxy, 1))                           \
    X(reply_keep_null, IS(GWIPC_E_INVAL), gwipc_reply_keep(NULL, &reply_out))                                \
    X(reply_keep_null_out, IS(GWIPC_E_INVAL), gwipc_reply_keep(&F.live_reply, NULL))                         \
    X(reply_keep_outside_callback, IS(GWIPC_E_BADHANDLE), keep_live_reply_outside_callback())                \
    X(reply_keep_released_copy, IS(GWIPC_E_BADHANDLE), keep_copied_released_reply())                         \
    X(reply_release_null, NO_CRASH, (gwipc_reply_release(NULL), 0))                                          \
    X(reply_release_twice_copy_zeroed, NO_CRASH, reply_release_twice())                                      \
    X(reply_release_live, NO_CRASH, (gwipc_reply_release(&F.live_reply), 0))                                 \
    /* finders */                                                                                            \
    X(find_null_node, IS(GWIPC_E_INVAL), find_(NULL, "gwt.test", NULL, noop_find))                           \
    X(find_null_id, IS(GWIPC_E_INVAL), find_(F.dn, NULL, NULL, noop_find))                                   \
    X(find_null_cb, IS(GWIPC_E_INVAL), find_(F.dn, "gwt.test", NULL, NULL))                                  \
    X(find_null_out, IS(GWIPC_E_INVAL), gwipc_node_find(F.dn, "gwt.test", 1, 0, NULL, noop_find, NULL, NULL, NULL)) \
    X(find_bad_id, IS(GWIPC_E_INVALID_SERVICE), find_(F.dn, "a b", NULL, noop_find))                         \
    X(find_closed_node, IS(GWIPC_E_BADHANDLE), find_(F.closed_node, "gwt.test", NULL, noop_find))            \
    X(find_star_garbage_out_ok, IS(GWIPC_OK), find_(F.dn, "gwt.test", "*", noop_find))                      \
    X(finder_close_null, NO_CRASH, (gwipc_finder_close(NULL), 0))                                            \
    X(finder_close_twice, NO_CRASH, (gwipc_finder_close(F.closed_finder), 0))                                \
    X(finder_close_wrong_kind, NO_CRASH, (gwipc_finder_close((gwipc_finder *)(void *)F.p), 0))               \
    /* Simple-IPC */                                                                                         \
    X(sipc_null_path, IS(GWIPC_E_INVAL), sipc_(NULL, "ping", 4, &str_out, &len_out))                         \
    X(sipc_null_response, IS(GWIPC_E_INVAL), sipc_(F.status, "ping", 4, NULL, &len_out))                     \
    X(sipc_null_request, IS(GWIPC_E_INVAL), sipc_(F.status, NULL, 4, &str_out, &len_out))                    \
    X(sipc_null_len, ONE_OF(GWIPC_OK, GWIPC_E_INVAL), sipc_no_len())                                         \
    X(sipc_nothing_there, IS(GWIPC_E_SIPC_CONNECT), sipc_("/nonexistent/gwt.sock", "ping", 4, &str_out, &len_out)) \
    X(sipc_ping_ok, IS(GWIPC_OK), sipc_(F.status, "ping", 4, &str_out, &len_out))                            \
    /* after all that, the live objects still work */                                                        \
    X(still_alive_call, IS(GWIPC_OK), call_(F.p, GWT_M_ECHO, "alive", 5, 5000000))                           \
    X(still_alive_publish, IS(GWIPC_OK), gwipc_offer_publish(F.o, 0, "alive", 5, 0))

#define ROW_FN(name, want, expr)                                                                             \
    static int row_##name(void) { return (expr); }
ROWS(ROW_FN)

static const struct row {
    const char *name;
    struct want want;
    int (*fn)(void);
} rows[] = {
#define ROW_ENTRY(name, want, expr) {#name, want, row_##name},
    ROWS(ROW_ENTRY)
};
#define N_ROWS (sizeof rows / sizeof rows[0])

/* ---- The child: run the rows from `from` --------------------------------- */

static int run_table(size_t from)
{
    char line[256];
    build_fixture();
    int n = snprintf(line, sizeof line, "fixture ok\n");
    if (write(1, line, (size_t)n) < 0)
        return 3;
    for (size_t i = from; i < N_ROWS; i++) {
        n = snprintf(line, sizeof line, "begin %zu\n", i);
        if (write(1, line, (size_t)n) < 0)
            return 3;
        int rc = rows[i].fn();
        n = snprintf(line, sizeof line, "row %zu %d\n", i, rc);
        if (write(1, line, (size_t)n) < 0)
            return 3;
    }
    /* Closing everything must not crash either. */
    gwipc_node_close(F.dn);
    gwipc_node_close(F.ln);
    gwipc_config_free(F.cfg);
    if (write(1, "end\n", 4) < 0)
        return 3;
    return 0;
}

/* ---- The parent: run the table, survive crashes, compare -------------------- */

enum { NOT_RUN, DONE, CRASHED, HUNG };

static int matches(const struct want *w, int rc)
{
    if (w->n == 0)
        return 1;
    if (w->n < 0)
        return rc < 0;
    for (int i = 0; i < w->n; i++)
        if (rc == w->codes[i])
            return 1;
    return 0;
}

static const char *code_name(int rc)
{
    static char buf[64];
    switch (rc) {
    case OUT_NOT_NULL: return "*out not NULL after failure";
    case ERR_NOT_FILLED: return "gwipc_error not filled";
    case ERR_OVERWRITTEN: return "wrote past err->struct_size";
    case NOT_ZEROED: return "*reply not zeroed";
    case HANDLE_REUSED: return "handle value reused";
    case STAYED_PENDING: return "not still pending/open";
    }
    if (rc > 0 && rc < 1000) {
        snprintf(buf, sizeof buf, "%d", rc);
        return buf;
    }
    return gwipc_error_name(rc);
}

static void test_misuse_table(void)
{
    static int status[N_ROWS], result[N_ROWS];
    char self[4096], from_s[32], line[256];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    GWT_CHECK(n > 0, "readlink /proc/self/exe");
    self[n] = '\0';
    size_t from = 0;
    while (from < N_ROWS) {
        gwt_child c;
        snprintf(from_s, sizeof from_s, "%zu", from);
        /* Pitfall 6 (out-params filled with 0xAA, Go writing pointers into C
         * memory): the child runs with the GC's mark verification and a GC
         * at every 1% of heap growth. Read at load: set before exec. */
        setenv("GODEBUG", "gccheckmark=1", 1);
        setenv("GOGC", "1", 1);
        gwt_spawn(&c, self, "--table", from_s, (char *)NULL);
        unsetenv("GODEBUG");
        unsetenv("GOGC");
        GWT_CHECK(gwt_try_expect(&c, NULL, "fixture ok", NULL, 0, 30000000) == 0,
                  "the table's fixture failed (starting at row %zu); see stderr", from);
        long current = -1;
        for (;;) {
            int r = gwt_try_expect(&c, NULL, "", line, sizeof line, 15000000);
            if (r == -1 && current >= 0) { /* a row hangs */
                status[current] = HUNG;
                gwt_kill(&c, SIGKILL);
                break;
            }
            if (r != 0)
                break;
            size_t i;
            int rc;
            if (sscanf(line, "begin %zu", &i) == 1)
                current = (long)i;
            else if (sscanf(line, "row %zu %d", &i, &rc) == 2 && i < N_ROWS) {
                status[i] = DONE;
                result[i] = rc;
                current = -1;
            } else if (strcmp(line, "end") == 0)
                break;
        }
        int code = gwt_wait_exit(&c, NULL, 10000000);
        if (current >= 0 && status[current] != HUNG) {
            status[current] = CRASHED;
            result[current] = code;
        }
        if (current < 0) {
            GWT_CHECK(code == 0, "the table child exited %d after its last row (closing the nodes?)", code);
            break;
        }
        from = (size_t)current + 1;
    }

    int failures = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct row *r = &rows[i];
        if (status[i] == DONE && matches(&r->want, result[i]))
            continue;
        failures++;
        if (status[i] == CRASHED)
            print_error("  %-40s CRASHED the process (exit %d)\n", r->name, result[i]);
        else if (status[i] == HUNG)
            print_error("  %-40s HUNG (> 15 s)\n", r->name);
        else if (status[i] == NOT_RUN)
            print_error("  %-40s not run\n", r->name);
        else {
            char want[128] = "";
            if (r->want.n < 0)
                snprintf(want, sizeof want, "any error");
            for (int k = 0; k < r->want.n; k++) {
                strncat(want, k ? " or " : "", sizeof want - strlen(want) - 1);
                strncat(want, code_name(r->want.codes[k]), sizeof want - strlen(want) - 1);
            }
            print_error("  %-40s got %s (%d), want %s\n", r->name, code_name(result[i]), result[i], want);
        }
    }
    print_message("misuse table: %zu rows, %d unexpected\n", N_ROWS, failures);
    GWT_CHECK(failures == 0, "%d of %zu misuse rows behaved unexpectedly (listed above)", failures, N_ROWS);
}

static size_t table_from;
static void table_child(void) { exit(run_table(table_from)); }

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--table") == 0) {
        /* The child: the gwt_* helpers it uses need what gwt_run sets up, so
         * the table runs as a one-test group (cmocka's lines are ignored). */
        table_from = (size_t)strtoul(argv[2], NULL, 10);
        const struct CMUnitTest child[] = {GWT_TEST(table_child)};
        return GWT_RUN(child);
    }
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_misuse_table),
    };
    return GWT_RUN(tests);
}
