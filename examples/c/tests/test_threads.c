/*
 * test_threads - the header's thread rules:
 *  "Callbacks run only inside that loop, on its thread, one at a time:
 *   sample, call, availability, subscription, completion, find, peer,
 *   authorize, log, command, posted and destroy callbacks alike."
 *  "Closing any object from another thread waits for a callback of it in
 *   progress; once the close returns, no callback of that object runs."
 *  "destroy ... runs exactly once per registration, after its last callback"
 *  re-entrant dispatch: GWIPC_E_BUSY; blocking calls from a callback:
 *  GWIPC_E_DEADLOCK.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define SEC 1000000LL

/* ---- Every callback type records the thread it ran on --------------------------- */

enum {
    CB_SAMPLE, CB_CALL, CB_CANCEL, CB_AVAIL, CB_SUBACK, CB_SUBSCRIBERS, CB_UPDATE_REQ, CB_COMPLETION, CB_FIND,
    CB_PEER_UP, CB_PEER_DOWN, CB_AUTHORIZE, CB_LOG, CB_COMMAND, CB_POSTED, CB_DESTROY, CB_N
};
static const char *cb_names[CB_N] = {"sample", "call", "cancel", "availability", "suback", "subscribers",
                                     "update request", "completion", "find", "peer connected",
                                     "peer disconnected", "authorize", "log", "command", "posted", "destroy"};

static struct tids {
    pthread_mutex_t mu;
    pid_t dispatcher; /* the thread that calls gwipc_node_dispatch */
    int count[CB_N], wrong[CB_N];
    pid_t wrong_tid[CB_N];
    gwipc_offer *offer;
} T = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, {0}, {0}, NULL};

static void note(int cb)
{
    pid_t me = gettid();
    pthread_mutex_lock(&T.mu);
    T.count[cb]++;
    if (me != T.dispatcher) {
        T.wrong[cb]++;
        T.wrong_tid[cb] = me;
    }
    pthread_mutex_unlock(&T.mu);
}

static int count(int cb)
{
    pthread_mutex_lock(&T.mu);
    int n = T.count[cb];
    pthread_mutex_unlock(&T.mu);
    return n;
}

static void t_sample(void *u, gwipc_proxy *p, const gwipc_sample *s) { (void)u, (void)p, (void)s, note(CB_SAMPLE); }
static void t_avail(void *u, gwipc_proxy *p, int a) { (void)u, (void)p, (void)a, note(CB_AVAIL); }
static void t_suback(void *u, gwipc_proxy *p, uint16_t e, int s) { (void)u, (void)p, (void)e, (void)s, note(CB_SUBACK); }
static void t_destroy(void *u) { (void)u, note(CB_DESTROY); }
static void t_find(void *u, gwipc_finder *f, const gwipc_find_event *e) { (void)u, (void)f, (void)e, note(CB_FIND); }
static void t_posted(void *u) { (void)u, note(CB_POSTED); }
static void t_log(void *u, int level, const char *line) { (void)u, (void)level, (void)line, note(CB_LOG); }
static void t_up(void *u, gwipc_node *n, const gwipc_peer_info *p) { (void)u, (void)n, (void)p, note(CB_PEER_UP); }
static void t_down(void *u, gwipc_node *n, const gwipc_peer_info *p, const gwipc_error *w)
{
    (void)u, (void)n, (void)p, (void)w, note(CB_PEER_DOWN);
}
static int t_authorize(void *u, const gwipc_peer_info *p, char *reason, size_t cap)
{
    (void)u, (void)p, (void)reason, (void)cap, note(CB_AUTHORIZE);
    return 0;
}
static int t_command(void *u, const void *r, size_t l, gwipc_writer *w)
{
    (void)u, (void)r, (void)l, note(CB_COMMAND);
    return gwipc_writer_write(w, "ok", 2) == GWIPC_OK ? 0 : 1;
}
static void t_reply(void *u, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)u, (void)p, (void)id, (void)r, (void)e, note(CB_COMPLETION);
}
static void t_call(void *u, gwipc_offer *o, const gwipc_call *c)
{
    (void)u, (void)o, note(CB_CALL);
    if (c->method == GWT_M_ECHO)
        gwipc_call_reply(c, c->data, c->len);
    /* GWT_M_SLOW stays unanswered until cancelled */
}
static void t_cancel(void *u, gwipc_offer *o, const gwipc_call *c)
{
    (void)u, (void)o, note(CB_CANCEL);
    gwipc_call_reply(c, NULL, 0); /* frees it (the answer is dropped) */
}
static void t_subscribers(void *u, gwipc_offer *o, uint16_t e, int on) { (void)u, (void)o, (void)e, (void)on, note(CB_SUBSCRIBERS); }
static void t_update(void *u, gwipc_offer *o, uint16_t e)
{
    (void)u, note(CB_UPDATE_REQ);
    gwipc_offer_publish(o, e, "now", 3, 0);
}

/* Two nodes in this process: L listens (with everything a listener can
 * have), D dials a gwt_peer provider. */
static struct world {
    char lsock[256], lstatus[256], psock[256];
    gwipc_node *L, *D;
    gwipc_proxy *p;
    gwipc_finder *f;
    gwt_child prov, cons;
    volatile int stop;
    int threaded;
} W;

/* Dispatches both nodes until W.stop (on the dispatcher thread). */
static void pump_both(int64_t wait_us)
{
    int rc = gwipc_node_dispatch(W.L, wait_us / 2);
    while (rc >= 0 && (rc & GWIPC_DISPATCH_MORE))
        rc = gwipc_node_dispatch(W.L, 0);
    int rc2 = gwipc_node_dispatch(W.D, wait_us / 2);
    while (rc2 >= 0 && (rc2 & GWIPC_DISPATCH_MORE))
        rc2 = gwipc_node_dispatch(W.D, 0);
    if (rc < 0 || rc2 < 0)
        W.stop = -1; /* reported by the main thread */
}

static void *dispatcher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&T.mu);
    T.dispatcher = gettid();
    pthread_mutex_unlock(&T.mu);
    while (!W.stop)
        pump_both(4000);
    return NULL;
}

/* Waits for cond: dispatching here, or leaving it to the dispatcher thread. */
#define PUMP(cond)                                                                                   \
    do {                                                                                             \
        int64_t dl_ = gwt_now_us() + 10 * SEC;                                                       \
        while (!(cond)) {                                                                            \
            GWT_CHECK(W.stop >= 0, "gwipc_node_dispatch failed");                                    \
            GWT_CHECK(gwt_now_us() < dl_, "timed out waiting for %s", #cond);                        \
            if (W.threaded)                                                                          \
                gwt_sleep_us(2000);                                                                  \
            else                                                                                     \
                pump_both(4000);                                                                     \
        }                                                                                            \
    } while (0)

static void *poster(void *arg)
{
    GWT_RC(gwipc_node_post(arg, t_posted, NULL, t_destroy), GWIPC_OK);
    return NULL;
}

static void every_callback_on_the_dispatching_thread(int threaded)
{
    memset(&W, 0, sizeof W);
    memset(T.count, 0, sizeof T.count);
    memset(T.wrong, 0, sizeof T.wrong);
    W.threaded = threaded;
    T.dispatcher = gettid();

    gwipc_config *cfg = NULL;
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_name(cfg, "threads-listener"), GWIPC_OK);
    GWT_RC(gwipc_config_set_peer_callbacks(cfg, t_up, t_down, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_config_set_authorize(cfg, t_authorize, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_config_set_log_callback(cfg, GWIPC_LOG_DEBUG, t_log, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_config_set_status_path(cfg, gwt_path(W.lstatus, sizeof W.lstatus, "l.status"), 0), GWIPC_OK);
    GWT_RC(gwipc_node_listen(gwt_path(W.lsock, sizeof W.lsock, "l.sock"), cfg, &W.L, NULL), GWIPC_OK);
    gwipc_config_free(cfg);
    GWT_RC(gwipc_node_handle_command(W.L, "tid", t_command, NULL, NULL), GWIPC_OK);
    static const uint16_t fields[] = {GWT_EV_FIELD};
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    op.events = GWT_EVENTS, op.methods = GWT_METHODS, op.fields = fields, op.n_fields = 1;
    op.on_call = t_call, op.on_cancel = t_cancel, op.on_subscription = t_subscribers;
    op.on_update_request = t_update;
    gwipc_service_id one = gwt_service("one");
    GWT_RC(gwipc_node_offer(W.L, &one, &op, &T.offer, NULL), GWIPC_OK);

    gwt_peer_provider(&W.prov, gwt_path(W.psock, sizeof W.psock, "p.sock"), NULL, "threads-provider");
    W.D = gwt_dial(W.psock, "threads-dialler");
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    pp.on_availability = t_avail, pp.on_subscription = t_suback;
    GWT_RC(gwipc_node_require(W.D, &one, &pp, &W.p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(W.p, GWT_EV_PLAIN, GWIPC_UPDATES, t_sample, NULL, t_destroy), GWIPC_OK);
    GWT_RC(gwipc_node_find(W.D, "gwt.test", 1, 0, NULL, t_find, NULL, NULL, &W.f), GWIPC_OK);

    pthread_t disp;
    if (threaded)
        pthread_create(&disp, NULL, dispatcher, NULL); /* it sets T.dispatcher */
    gwt_peer_consumer(&W.cons, W.lsock, "threads-consumer");
    PUMP(count(CB_AVAIL) >= 1 && count(CB_SUBACK) >= 1 && count(CB_FIND) >= 1 && count(CB_PEER_UP) >= 1 &&
         count(CB_SUBSCRIBERS) >= 1);

    gwt_send(&W.prov, "pub 3");
    PUMP(count(CB_SAMPLE) >= 3);
    GWT_RC(gwipc_proxy_call_async(W.p, GWT_M_ECHO, "x", 1, 5 * SEC, t_reply, NULL, t_destroy, NULL), GWIPC_OK);
    PUMP(count(CB_COMPLETION) >= 1);

    gwt_send(&W.cons, "call a %d x", GWT_M_ECHO);
    gwt_send(&W.cons, "call b %d 5000 100", GWT_M_SLOW);
    gwt_send(&W.cons, "request-update %d", GWT_EV_FIELD);
    PUMP(count(CB_CALL) >= 2 && count(CB_CANCEL) >= 1 && count(CB_UPDATE_REQ) >= 1);

    pthread_t t;
    pthread_create(&t, NULL, poster, W.L); /* gwipc_node_post from a third thread */
    pthread_join(t, NULL);
    PUMP(count(CB_POSTED) >= 1);

    gwt_child q;
    gwt_spawn(&q, "c-tests/gwt_peer", "query", W.lstatus, "tid", (char *)NULL);
    PUMP(count(CB_COMMAND) >= 1);
    int destroyed = count(CB_DESTROY);
    GWT_RC(gwipc_proxy_unsubscribe(W.p, GWT_EV_PLAIN), GWIPC_OK); /* its destroy: "in the next dispatch" */
    PUMP(count(CB_DESTROY) > destroyed);
    gwt_send(&W.cons, "quit");
    PUMP(count(CB_PEER_DOWN) >= 1);

    if (threaded) {
        W.stop = 1;
        pthread_join(disp, NULL);
    }
    GWT_CHECK(W.stop >= 0, "gwipc_node_dispatch failed on the dispatcher thread");
    gwt_wait_exit(&q, NULL, 10 * SEC);
    gwt_wait_exit(&W.cons, NULL, 10 * SEC);
    gwt_send(&W.prov, "quit");
    gwt_wait_exit(&W.prov, NULL, 10 * SEC);
    gwt_node_close(W.D);
    gwt_node_close(W.L);

    int bad = 0;
    for (int i = 0; i < CB_N; i++) {
        print_message("  %-18s %3d calls%s\n", cb_names[i], T.count[i],
                      T.wrong[i] ? ", some on the WRONG thread" : "");
        if (T.wrong[i]) {
            print_error("%s callback ran on thread %d, the dispatching thread is %d\n", cb_names[i],
                        (int)T.wrong_tid[i], (int)T.dispatcher);
            bad++;
        }
        if (T.count[i] == 0 && i != CB_LOG) { /* log records are optional */
            print_error("%s callback never ran\n", cb_names[i]);
            bad++;
        }
    }
    GWT_CHECK(bad == 0, "%d callback types broke \"Callbacks run only inside that loop, on its thread\"", bad);
}

static void test_callbacks_on_the_main_thread(void) { every_callback_on_the_dispatching_thread(0); }
static void test_callbacks_on_a_dispatch_thread(void) { every_callback_on_the_dispatching_thread(1); }

/* ---- Close from another thread while a callback sleeps -------------------------- */

#define CANARY 0x600DF00Du
#define POISON 0xDEADDEADu

static struct slow {
    unsigned canary;
    volatile int in_cb, calls;
    int64_t cb_start, cb_end;
} *SL;
static volatile int uaf;         /* a callback saw a poisoned userdata */
static volatile int uaf_where;   /* 1 sample, 2 availability, 3 destroy */
static volatile int destroys[4]; /* sample sub, proxy, finder, peer callbacks */
static volatile int posted_runs, posted_destroys;
static volatile int final_rc = 1;

static void slow_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    struct slow *x = ud;
    (void)p, (void)s;
    if (x->canary != CANARY) {
        uaf++, uaf_where = 1;
        return;
    }
    x->calls++;
    x->cb_start = gwt_now_us();
    x->in_cb = 1;
    gwt_sleep_us(50000);
    x->cb_end = gwt_now_us();
}
static void slow_avail(void *ud, gwipc_proxy *p, int a)
{
    (void)p, (void)a;
    if (((struct slow *)ud)->canary != CANARY)
        uaf++, uaf_where = 2;
}
static void count_destroy0(void *ud) { (void)ud, destroys[0]++; }
static void count_destroy1(void *ud)
{
    struct slow *x = ud;
    if (x->canary != CANARY)
        uaf++, uaf_where = 3;
    destroys[1]++;
    x->canary = POISON; /* "the place to free userdata": what free() would leave */
}
static void count_destroy2(void *ud) { (void)ud, destroys[2]++; }
static void count_destroy3(void *ud) { (void)ud, destroys[3]++; }
static void count_post(void *ud) { (void)ud, posted_runs++; }
static void count_post_destroy(void *ud) { (void)ud, posted_destroys++; }
static void nop_find(void *ud, gwipc_finder *f, const gwipc_find_event *e) { (void)ud, (void)f, (void)e; }

static volatile int stop_a;
static void *dispatch_until_error(void *node)
{
    int rc;
    do
        rc = gwipc_node_dispatch(node, 10000);
    while (rc >= 0 && !stop_a);
    final_rc = rc;
    return NULL;
}

/* Thread A dispatches; this thread closes the node (or only the proxy)
 * while A sleeps 50 ms in the proxy's sample callback. The proxy's destroy
 * poisons its userdata, as a free() there would: nothing may see it after. */
static void close_from_another_thread(int just_the_proxy)
{
    char sock[256];
    gwt_child prov;
    uaf = 0, posted_runs = posted_destroys = 0, final_rc = 1, stop_a = 0;
    memset((void *)destroys, 0, sizeof destroys);
    SL = calloc(1, sizeof *SL);
    SL->canary = CANARY;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "slow-provider");

    gwipc_config *cfg = NULL;
    gwipc_node *node = NULL;
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_peer_callbacks(cfg, NULL, NULL, NULL, count_destroy3), GWIPC_OK);
    GWT_RC(gwipc_node_dial(sock, cfg, &node, NULL), GWIPC_OK);
    gwipc_config_free(cfg);
    gwipc_service_id one = gwt_service("one");
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    gwipc_proxy *p = NULL;
    gwipc_finder *f = NULL;
    pp.on_availability = slow_avail, pp.userdata = SL, pp.destroy = count_destroy1;
    GWT_RC(gwipc_node_require(node, &one, &pp, &p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(p, GWT_EV_PLAIN, GWIPC_UPDATES, slow_sample, SL, count_destroy0), GWIPC_OK);
    GWT_RC(gwipc_node_find(node, "gwt.test", 1, 0, NULL, nop_find, NULL, count_destroy2, &f), GWIPC_OK);
    GWT_UNTIL(node, gwipc_proxy_is_available(p) == 1, 10 * SEC);
    int state = -1;
    GWT_UNTIL(node, gwipc_proxy_subscription_state(p, GWT_EV_PLAIN, &state) == GWIPC_OK &&
                        state == GWIPC_SUBSCRIPTION_ACTIVE, 5 * SEC);

    pthread_t a;
    pthread_create(&a, NULL, dispatch_until_error, node); /* thread A runs the callbacks */
    gwt_send(&prov, "pub 3");
    GWT_WAIT(SL->in_cb, 5 * SEC);
    if (!just_the_proxy)
        GWT_RC(gwipc_node_post(node, count_post, NULL, count_post_destroy), GWIPC_OK);
    int64_t t0 = gwt_now_us();
    if (just_the_proxy)
        gwipc_proxy_close(p); /* from this thread, while thread A sleeps in slow_sample */
    else
        gwipc_node_close(node);
    int64_t t1 = gwt_now_us();
    int calls_at_close = SL->calls;
    GWT_CHECK(SL->cb_end != 0 && SL->cb_end <= t1,
              "%s returned %lld us before the callback in progress ended", just_the_proxy ? "gwipc_proxy_close" : "gwipc_node_close",
              (long long)(SL->cb_end ? SL->cb_end - t1 : -1));
    GWT_CHECK(SL->cb_start < t0 + 1000, "the callback was not in progress when close was called");
    print_message("%s waited %lld ms for a 50 ms callback\n", just_the_proxy ? "proxy close" : "node close",
                  (long long)((t1 - t0) / 1000));

    gwt_send(&prov, "pub 5");
    gwt_sleep_us(300000);
    if (just_the_proxy)
        stop_a = 1; /* the node lives on: stop thread A ourselves */
    GWT_WAIT(final_rc != 1, 5 * SEC);
    pthread_join(a, NULL);
    if (just_the_proxy) {
        assert_int_equal(final_rc, 0); /* dispatch went on working */
        gwt_dispatch(node, 10000);
    } else {
        GWT_CHECK(final_rc == GWIPC_E_BADHANDLE || final_rc == GWIPC_E_CLOSED, "dispatch after close: %s",
                  gwipc_error_name(final_rc));
    }
    assert_int_equal(SL->calls, calls_at_close); /* "no callback of that object runs" */
    GWT_CHECK(uaf == 0, "%d callbacks ran with the userdata freed by the destroy (the last: %s)", uaf,
              uaf_where == 1 ? "sample" : uaf_where == 2 ? "availability" : "the proxy's destroy");
    /* destroy once each, after the last callback */
    assert_int_equal(destroys[0], 1);
    assert_int_equal(destroys[1], 1);
    if (just_the_proxy) {
        assert_int_equal(gwipc_proxy_is_available(p), GWIPC_E_BADHANDLE); /* stale now */
        assert_int_equal(destroys[2], 0);
        gwt_node_close(node);
    } else {
        gwt_node_forget(node);
        assert_int_equal(posted_destroys, 1); /* "destroy ... runs once afterwards either way" */
        GWT_CHECK(posted_runs <= 1, "the posted function ran %d times", posted_runs);
    }
    assert_int_equal(destroys[0], 1);
    assert_int_equal(destroys[1], 1);
    assert_int_equal(destroys[2], 1);
    assert_int_equal(destroys[3], 1); /* the config's, once its node closed */
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, NULL, 10 * SEC);
    free(SL);
}

static void test_node_close_from_another_thread_waits_for_the_callback(void) { close_from_another_thread(0); }
static void test_proxy_close_from_another_thread_waits_for_the_callback(void) { close_from_another_thread(1); }

/* "Closing any object from another thread waits for a callback of it in
 * progress; once the close returns, no callback of that object runs", and
 * destroy callbacks are callbacks ("sample, call, ... posted and destroy
 * callbacks alike"). So a proxy closed from another thread while a loop
 * dispatches has run its destroy when the close returns, and a host may
 * free the userdata right after the close. Thread A dispatches an idle
 * node; this thread closes the proxy. */
static volatile int idle_destroys;
static void idle_destroy(void *ud) { (void)ud, idle_destroys++; }

static void nop_call(void *ud, gwipc_offer *o, const gwipc_call *c) { (void)ud, (void)o, (void)c; }

static void test_destroy_has_run_when_close_returns_from_another_thread(void)
{
    static const char *kinds[] = {"gwipc_proxy_close", "gwipc_finder_close", "gwipc_offer_close"};
    char sock[256], msg[512] = "";
    gwt_child prov;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "idle-provider");
    gwipc_node *node = gwt_dial(sock, "idle");
    int late_total = 0;
    for (int kind = 0; kind < 3; kind++) {
        int late = 0;
        for (int round = 0; round < 5; round++) {
            gwipc_service_id one = gwt_service("one"), mine = gwt_service("mine");
            gwipc_proxy *p = NULL;
            gwipc_finder *f = NULL;
            gwipc_offer *o = NULL;
            idle_destroys = 0, final_rc = 1, stop_a = 0;
            if (kind == 0) {
                gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
                pp.destroy = idle_destroy;
                GWT_RC(gwipc_node_require(node, &one, &pp, &p, NULL), GWIPC_OK);
                GWT_UNTIL(node, gwipc_proxy_is_available(p) == 1, 10 * SEC);
            } else if (kind == 1) {
                GWT_RC(gwipc_node_find(node, "gwt.test", 1, 0, NULL, nop_find, NULL, idle_destroy, &f), GWIPC_OK);
            } else {
                gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
                op.events = 1, op.methods = 1, op.on_call = nop_call, op.destroy = idle_destroy;
                GWT_RC(gwipc_node_offer(node, &mine, &op, &o, NULL), GWIPC_OK);
            }
            gwt_dispatch(node, 20000);
            pthread_t a;
            pthread_create(&a, NULL, dispatch_until_error, node);
            gwt_sleep_us(20000); /* A waits in gwipc_node_dispatch */
            if (kind == 0)
                gwipc_proxy_close(p);
            else if (kind == 1)
                gwipc_finder_close(f);
            else
                gwipc_offer_close(o);
            int at_return = idle_destroys;
            gwt_sleep_us(50000);
            stop_a = 1;
            pthread_join(a, NULL);
            gwt_dispatch(node, 10000);
            GWT_CHECK(idle_destroys == 1, "%s: destroy ran %d times", kinds[kind], idle_destroys);
            late += at_return == 0;
        }
        if (late) {
            char part[128];
            snprintf(part, sizeof part, " %s: %d of 5;", kinds[kind], late);
            strncat(msg, part, sizeof msg - strlen(msg) - 1);
        }
        late_total += late;
    }
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, node, 10 * SEC);
    gwt_node_close(node);
    GWT_CHECK(late_total == 0,
              "destroy ran after the close (from another thread, a loop dispatching) returned:%s "
              "\"once the close returns, no callback of that object runs\"", msg);
}

/* ---- Re-entrancy from inside callbacks ------------------------------------------ */

static struct reent {
    gwipc_node *node;
    gwipc_proxy *p;
    gwipc_offer *o;
    char status[256];
    int done, pdone;
    int dispatch, call, shutdown, run, run_thread, sipc, async, status_json;
    int publish_wait, loan_wait, publish_nowait;
    int64_t call_took;
} R;

static void reent_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    gwipc_reply r = {0};
    char *resp = NULL, *json = NULL;
    size_t len;
    (void)ud, (void)s;
    if (R.done++)
        return;
    R.dispatch = gwipc_node_dispatch(R.node, 0);
    int64_t t0 = gwt_now_us();
    R.call = gwipc_proxy_call(p, GWT_M_ECHO, "x", 1, 1 * SEC, &r, NULL);
    R.call_took = gwt_now_us() - t0;
    if (R.call == GWIPC_OK)
        gwipc_reply_release(&r);
    R.shutdown = gwipc_node_shutdown(R.node, 100000);
    R.run = gwipc_node_run(R.node);
    R.run_thread = gwipc_node_run_thread(R.node);
    R.sipc = gwipc_sipc_query(R.status, "ping", 4, 5 * SEC, &resp, &len, NULL);
    gwipc_free(resp);
    R.async = gwipc_proxy_call_async(p, GWT_M_ECHO, "y", 1, 5 * SEC, t_reply, NULL, NULL, NULL);
    R.status_json = gwipc_node_status_json(R.node, &json, NULL);
    gwipc_free(json);
}

static void reent_subscribers(void *ud, gwipc_offer *o, uint16_t ev, int on)
{
    gwipc_loan loan = {0};
    (void)ud;
    if (!on || ev != GWT_EV_PLAIN || R.pdone++)
        return;
    R.publish_wait = gwipc_offer_publish(o, ev, "w", 1, 1 * SEC);
    R.loan_wait = gwipc_offer_loan(o, ev, 1 * SEC, &loan);
    if (R.loan_wait == GWIPC_OK)
        gwipc_loan_discard(&loan);
    R.publish_nowait = gwipc_offer_publish(o, ev, "n", 1, 0);
}

static void noop_call(void *ud, gwipc_offer *o, const gwipc_call *c) { (void)ud, (void)o, (void)c; }

static void test_reentrant_dispatch_busy_blocking_calls_deadlock(void)
{
    char sock[256], lsock[256];
    gwt_child prov;
    memset(&R, 0, sizeof R);
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), gwt_path(R.status, sizeof R.status, "p.status"),
                      "reent-provider");
    R.node = gwt_dial(sock, "reent");
    gwt_rec rec;
    gwt_rec_init(&rec);
    R.p = gwt_require(R.node, "one", &rec, -1, 0);
    GWT_RC(gwipc_proxy_subscribe(R.p, GWT_EV_PLAIN, GWIPC_UPDATES, reent_sample, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(R.node, gwt_rec_suback(&rec, GWT_EV_PLAIN) == 0, 10 * SEC);
    gwt_send(&prov, "pub 1");
    GWT_UNTIL(R.node, R.done, 10 * SEC);
    GWT_RC(R.dispatch, GWIPC_E_BUSY);
    GWT_RC(R.call, GWIPC_E_DEADLOCK);
    GWT_CHECK(R.call_took < 200000, "the refused call took %lld ms (blocked?)", (long long)(R.call_took / 1000));
    GWT_RC(R.shutdown, GWIPC_E_DEADLOCK);
    GWT_RC(R.run, GWIPC_E_BUSY);
    GWT_RC(R.run_thread, GWIPC_E_BUSY);
    GWT_RC(R.sipc, GWIPC_OK); /* "from a callback it does not deadlock" */
    GWT_RC(R.status_json, GWIPC_OK);
    GWT_RC(R.async, GWIPC_OK); /* not blocking: allowed */
    gwt_dispatch(R.node, 100000); /* the node still works */

    /* The provider side: waiting for a slot inside a callback of the node. */
    gwipc_node *L = gwt_listen(gwt_path(lsock, sizeof lsock, "l.sock"), "reent-listener", NULL);
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    op.events = GWT_EVENTS, op.methods = 1, op.on_call = noop_call, op.on_subscription = reent_subscribers;
    gwipc_service_id one = gwt_service("one");
    GWT_RC(gwipc_node_offer(L, &one, &op, &R.o, NULL), GWIPC_OK);
    gwt_child cons;
    gwt_peer_consumer(&cons, lsock, "reent-consumer");
    GWT_UNTIL(L, R.pdone, 10 * SEC);
    GWT_RC(R.publish_wait, GWIPC_E_DEADLOCK);
    GWT_RC(R.loan_wait, GWIPC_E_DEADLOCK);
    GWT_RC(R.publish_nowait, GWIPC_OK);
    gwt_expect(&cons, L, "sample 0 ", NULL, 0, 5 * SEC);
    gwt_wait_exit(&cons, L, 10 * SEC);
    gwt_node_close(L);
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, R.node, 10 * SEC);
    gwt_node_close(R.node);
}

/* ---- Closing from an object's own callback ---------------------------------------- */

static struct own {
    gwipc_node *node;
    int samples, sub_destroy, proxy_destroy, node_closed;
    int64_t close_took;
} O;

static void own_sample_closes_proxy(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)s;
    O.samples++;
    int64_t t0 = gwt_now_us();
    gwipc_proxy_close(p); /* "returns at once and that callback is the last" */
    O.close_took = gwt_now_us() - t0;
}
static void own_sample_closes_node(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)p, (void)s;
    O.samples++;
    int64_t t0 = gwt_now_us();
    gwipc_node_close(O.node);
    O.close_took = gwt_now_us() - t0;
    O.node_closed = 1;
}
static void own_sub_destroy(void *ud) { (void)ud, O.sub_destroy++; }
static void own_proxy_destroy(void *ud) { (void)ud, O.proxy_destroy++; }

static void close_from_own_callback(gwipc_sample_cb cb)
{
    char sock[256];
    gwt_child prov;
    memset(&O, 0, sizeof O);
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "own-provider");
    O.node = gwt_dial(sock, "own");
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    gwipc_proxy *p = NULL;
    pp.destroy = own_proxy_destroy;
    gwipc_service_id one = gwt_service("one");
    GWT_RC(gwipc_node_require(O.node, &one, &pp, &p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(p, GWT_EV_PLAIN, GWIPC_UPDATES, cb, NULL, own_sub_destroy), GWIPC_OK);
    int state = -1;
    GWT_UNTIL(O.node, gwipc_proxy_subscription_state(p, GWT_EV_PLAIN, &state) == GWIPC_OK &&
                          state == GWIPC_SUBSCRIPTION_ACTIVE, 10 * SEC);
    gwt_send(&prov, "pub 5"); /* one dispatch may take all five */
    gwt_expect(&prov, NULL, "published 5 0", NULL, 0, 5 * SEC);
    int64_t dl = gwt_now_us() + 2 * SEC;
    while (!O.samples && gwt_now_us() < dl)
        gwipc_node_dispatch(O.node, 10000);
    for (int i = 0; i < 20 && !O.node_closed; i++) /* the rest, if any, must not arrive */
        gwt_dispatch(O.node, 10000);
    if (O.node_closed) {
        int rc = gwipc_node_dispatch(O.node, 0);
        GWT_CHECK(rc == GWIPC_E_BADHANDLE || rc == GWIPC_E_CLOSED, "dispatch after close: %s", gwipc_error_name(rc));
    }
    assert_int_equal(O.samples, 1);
    GWT_CHECK(O.close_took < 20000, "close from its own callback took %lld ms", (long long)(O.close_took / 1000));
    assert_int_equal(O.sub_destroy, 1);
    assert_int_equal(O.proxy_destroy, 1);
    if (!O.node_closed)
        gwt_node_close(O.node);
    else
        gwt_node_forget(O.node);
    assert_int_equal(O.sub_destroy, 1);
    assert_int_equal(O.proxy_destroy, 1);
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, NULL, 10 * SEC);
}

static void test_proxy_closed_from_its_own_callback(void) { close_from_own_callback(own_sample_closes_proxy); }
static void test_node_closed_from_a_callback(void) { close_from_own_callback(own_sample_closes_node); }

/* ---- Unsubscribe from another thread ---------------------------------------------- */

static volatile int unsub_calls, unsub_destroys;
static void unsub_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)p, (void)s;
    unsub_calls++;
    gwt_sleep_us(1000);
}
static void unsub_destroy(void *ud) { (void)ud, unsub_destroys++; }
static volatile int unsub_stop;
static void *unsub_dispatcher(void *node)
{
    while (!unsub_stop)
        gwipc_node_dispatch(node, 5000);
    return NULL;
}

/* "no callback for event starts after it returns, and its destroy runs in
 * the next dispatch" */
static void test_unsubscribe_from_another_thread_stops_callbacks(void)
{
    char sock[256];
    gwt_child prov;
    unsub_calls = unsub_destroys = unsub_stop = 0;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "unsub-provider");
    gwipc_node *node = gwt_dial(sock, "unsub");
    gwt_rec rec;
    gwt_rec_init(&rec);
    gwipc_proxy *p = gwt_require(node, "one", &rec, -1, 0);
    GWT_RC(gwipc_proxy_subscribe(p, GWT_EV_PLAIN, GWIPC_UPDATES, unsub_sample, NULL, unsub_destroy), GWIPC_OK);
    GWT_UNTIL(node, gwt_rec_suback(&rec, GWT_EV_PLAIN) == 0, 10 * SEC);
    pthread_t t;
    pthread_create(&t, NULL, unsub_dispatcher, node);
    gwt_send(&prov, "pub 200");
    GWT_WAIT(unsub_calls >= 20, 10 * SEC);
    GWT_RC(gwipc_proxy_unsubscribe(p, GWT_EV_PLAIN), GWIPC_OK);
    int at_return = unsub_calls;
    gwt_expect(&prov, NULL, "published 200", NULL, 0, 10 * SEC);
    gwt_sleep_us(300000);
    unsub_stop = 1;
    pthread_join(t, NULL);
    GWT_CHECK(unsub_calls == at_return, "%d sample callbacks started after unsubscribe returned",
              unsub_calls - at_return);
    assert_int_equal(unsub_destroys, 1);
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, node, 10 * SEC);
    gwt_node_close(node);
}

/* ---- gwipc_node_run and gwipc_node_run_thread ---------------------------------------- */

static struct runner {
    gwipc_node *node;
    pid_t tid;
    volatile int rc, done;
} RUN;

static void *run_node(void *arg)
{
    (void)arg;
    RUN.tid = gettid();
    RUN.rc = gwipc_node_run(RUN.node);
    RUN.done = 1;
    return NULL;
}

/* Callbacks run on the thread in gwipc_node_run, or all on the library's
 * one run thread (not ours); gwipc_node_stop ends either. */
static void test_run_and_run_thread(void)
{
    char sock[256];
    gwt_child prov;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "run-provider");
    RUN.node = gwt_dial(sock, "runner");
    static gwt_rec rec;
    gwt_rec_init(&rec);
    gwt_require(RUN.node, "one", &rec, GWT_EV_PLAIN, GWIPC_UPDATES);

    RUN.done = 0;
    pthread_t t;
    pthread_create(&t, NULL, run_node, NULL);
    GWT_WAIT(gwt_rec_suback(&rec, GWT_EV_PLAIN) == 0, 10 * SEC);
    gwt_send(&prov, "pub 3");
    gwt_rec_wait(&rec, NULL, 3, 5 * SEC);
    GWT_RC(gwipc_node_dispatch(RUN.node, 0), GWIPC_E_BUSY); /* "A second one gets GWIPC_E_BUSY" */
    GWT_RC(gwipc_node_stop(RUN.node), GWIPC_OK);
    GWT_WAIT(RUN.done, 2 * SEC);
    pthread_join(t, NULL);
    GWT_RC(RUN.rc, GWIPC_OK);
    for (int i = 0; i < 3; i++)
        GWT_CHECK(rec.s[i].tid == RUN.tid, "a sample callback ran on %d, gwipc_node_run's thread is %d",
                  (int)rec.s[i].tid, (int)RUN.tid);

    GWT_RC(gwipc_node_run_thread(RUN.node), GWIPC_OK);
    GWT_RC(gwipc_node_run_thread(RUN.node), GWIPC_E_BUSY);
    gwt_send(&prov, "pub 3");
    gwt_rec_wait(&rec, NULL, 6, 5 * SEC);
    GWT_RC(gwipc_node_stop(RUN.node), GWIPC_OK); /* "waits for the run thread to end" */
    GWT_RC(gwipc_node_stop(RUN.node), GWIPC_OK); /* "also when nothing runs" */
    pid_t lib = rec.s[3].tid;
    GWT_CHECK(lib != gettid() && lib != RUN.tid, "the run thread's callbacks ran on a thread of ours");
    for (int i = 4; i < 6; i++)
        assert_int_equal(rec.s[i].tid, lib);
    gwt_dispatch(RUN.node, 10000); /* ours again */
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, RUN.node, 10 * SEC);
    gwt_node_close(RUN.node);
}

/* ---- Closing is bounded ------------------------------------------------------------ */

static volatile int bounded_runs, bounded_destroys;
static void bounded_post(void *ud) { (void)ud, bounded_runs++; }
static void bounded_destroy(void *ud) { (void)ud, bounded_destroys++; }

/* gwipc_node_close from another thread while on_call reads its request:
 * the close waits for the callback before it unmaps the caller's pool
 * (it used to unmap first: SIGSEGV in on_call reading call->data). The
 * callback reads the request again after the close has begun. */
static volatile int oc_in, oc_closing, oc_ok;
static char oc_req[1000];
static void reading_on_call(void *ud, gwipc_offer *o, const gwipc_call *c)
{
    (void)ud, (void)o;
    oc_in = 1;
    for (int64_t dl = gwt_now_us() + 5 * SEC; !oc_closing && gwt_now_us() < dl;)
        gwt_sleep_us(1000);
    gwt_sleep_us(50000); /* the window the close used to unmap in */
    oc_ok = c->len == sizeof oc_req && memcmp(c->data, oc_req, sizeof oc_req) == 0;
}
static void ignore_reply(void *ud, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)ud, (void)p, (void)id, (void)r, (void)e;
}

static void test_node_close_from_another_thread_while_on_call_reads_its_request(void)
{
    char sock[256];
    gwipc_node *a = gwt_listen(gwt_path(sock, sizeof sock, "oc.sock"), "oc-provider", NULL);
    gwipc_node *b = gwt_dial(sock, "oc-consumer");
    gwipc_service_id svc = gwt_service("oc");
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    op.methods = 1, op.on_call = reading_on_call;
    gwipc_offer *o = NULL;
    gwipc_proxy *px = NULL;
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    GWT_RC(gwipc_node_offer(a, &svc, &op, &o, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_require(b, &svc, &pp, &px, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_run_thread(a), GWIPC_OK); /* on_call runs on the library's thread */
    GWT_UNTIL(b, gwipc_proxy_is_available(px) == 1, 10 * SEC);
    memset(oc_req, 'r', sizeof oc_req);
    oc_in = oc_closing = oc_ok = 0;
    GWT_RC(gwipc_proxy_call_async(px, 0, oc_req, sizeof oc_req, 0, ignore_reply, NULL, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(b, oc_in, 5 * SEC);
    oc_closing = 1;
    gwt_node_close(a);
    GWT_CHECK(oc_ok, "on_call read a changed request while the node closed");
    gwt_node_close(b);
}

/* Pitfall 16: a close that drains forever. 1000 posted functions queued and
 * a peer that stopped reading (SIGSTOP): close "says goodbye to every peer
 * (without waiting for slow ones)" and returns at once; the queued
 * functions do not run ("If the node closes first fn does not run"), each
 * destroy runs once. gwipc_node_shutdown waits at most its timeout. */
static void test_close_is_bounded_with_queued_work_and_a_stalled_peer(void)
{
    char sock[256];
    for (int pass = 0; pass < 2; pass++) {
        bounded_runs = bounded_destroys = 0;
        gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "bounded", NULL);
        gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
        gwipc_offer *o = NULL;
        op.events = GWT_EVENTS;
        gwipc_service_id one = gwt_service("one");
        GWT_RC(gwipc_node_offer(node, &one, &op, &o, NULL), GWIPC_OK);
        gwt_child c;
        gwt_peer_consumer(&c, sock, "stalled");
        gwt_expect(&c, node, "suback 0 0", NULL, 0, 10 * SEC);
        gwt_kill(&c, SIGSTOP);
        for (int i = 0; i < 2000; i++) { /* fills its share; the rest is dropped for it */
            int rc = gwipc_offer_publish(o, GWT_EV_PLAIN, "stalled?", 8, 0);
            GWT_CHECK(rc == GWIPC_OK || rc == GWIPC_E_NOSLOT, "publish: %s", gwipc_error_name(rc));
            if (i % 100 == 0)
                gwt_dispatch(node, 0);
        }
        for (int i = 0; i < 1000; i++)
            GWT_RC(gwipc_node_post(node, bounded_post, NULL, bounded_destroy), GWIPC_OK);
        int64_t t0 = gwt_now_us();
        if (pass == 0) {
            gwipc_node_close(node);
        } else {
            int rc = gwipc_node_shutdown(node, 200000);
            GWT_CHECK(rc == GWIPC_OK || rc == GWIPC_E_TIMEOUT, "shutdown: %s", gwipc_error_name(rc));
        }
        int64_t took = gwt_now_us() - t0;
        gwt_node_forget(node);
        print_message("%s with 1000 queued functions and a stopped peer: %lld ms\n",
                      pass ? "gwipc_node_shutdown(200 ms)" : "gwipc_node_close", (long long)(took / 1000));
        GWT_CHECK(took < (pass ? 500000 : 100000), "%s took %lld ms", pass ? "shutdown" : "close",
                  (long long)(took / 1000));
        assert_int_equal(bounded_runs, 0);
        assert_int_equal(bounded_destroys, 1000);
        gwt_kill(&c, SIGCONT);
        gwt_wait_exit(&c, NULL, 10 * SEC);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_callbacks_on_the_main_thread),
        GWT_TEST(test_callbacks_on_a_dispatch_thread),
        GWT_TEST(test_node_close_from_another_thread_waits_for_the_callback),
        GWT_TEST(test_proxy_close_from_another_thread_waits_for_the_callback),
        GWT_TEST(test_destroy_has_run_when_close_returns_from_another_thread),
        GWT_TEST(test_reentrant_dispatch_busy_blocking_calls_deadlock),
        GWT_TEST(test_proxy_closed_from_its_own_callback),
        GWT_TEST(test_node_closed_from_a_callback),
        GWT_TEST(test_unsubscribe_from_another_thread_stops_callbacks),
        GWT_TEST(test_run_and_run_thread),
        GWT_TEST(test_close_is_bounded_with_queued_work_and_a_stalled_peer),
        GWT_TEST(test_node_close_from_another_thread_while_on_call_reads_its_request),
    };
    return GWT_RUN(tests);
}
