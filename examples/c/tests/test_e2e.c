/*
 * test_e2e - a C provider and a C consumer in separate processes: events,
 * fields, methods, find, availability, peers, the status JSON, the status
 * endpoint and application commands. This process plays one side; gwt_peer
 * (started with posix_spawn) plays the other.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#define SEC 1000000LL

/* ---- This process as the consumer of a gwt_peer provider --------------------- */

static struct side {
    char sock[256], status[256];
    gwt_child prov;
    gwipc_node *node;
    gwipc_proxy *p;
    gwt_rec rec;
} S;

/* consumer_side with the consumer dialled with cfg (NULL: the defaults). */
/* The provider's option for the next consumer_side (NULL: none). */
static const char *provider_opt;

static void consumer_side_config(int event, int mode, gwipc_config *cfg)
{
    memset(&S, 0, sizeof S);
    gwt_path(S.sock, sizeof S.sock, "p.sock");
    gwt_path(S.status, sizeof S.status, "p.status");
    gwt_peer_provider_opt(&S.prov, S.sock, S.status, "gwt-provider", provider_opt);
    provider_opt = NULL;
    S.node = cfg ? gwt_dial_config(S.sock, cfg) : gwt_dial(S.sock, "e2e-consumer");
    gwt_rec_init(&S.rec);
    S.p = gwt_require(S.node, "one", &S.rec, event, mode);
    GWT_UNTIL(S.node, gwt_rec_available(&S.rec) == 1, 10 * SEC);
    if (event >= 0)
        GWT_UNTIL(S.node, gwt_rec_suback(&S.rec, event) == 0, 5 * SEC);
}

static void consumer_side(int event, int mode) { consumer_side_config(event, mode, NULL); }

static void side_end(void)
{
    gwt_send(&S.prov, "quit");
    GWT_CHECK(gwt_wait_exit(&S.prov, S.node, 10 * SEC) == 0, "the provider did not exit 0");
    gwt_node_close(S.node);
}

/* Checks n samples from index first: event 0, consecutive seqs, data
 * "<prefix> <k>" with k counting from k0. */
static void check_run(int first, int n, const char *prefix, int k0)
{
    for (int i = first; i < first + n; i++) {
        const gwt_srec *x = &S.rec.s[i];
        char want[64];
        snprintf(want, sizeof want, "%s %d", prefix, k0 + i - first);
        assert_int_equal(x->event, GWT_EV_PLAIN);
        assert_string_equal(x->data, want);
        assert_int_equal(x->len, strlen(want));
        assert_int_equal(x->requested, 0);
        assert_int_equal(x->kept, 0);
        if (i > 0)
            GWT_CHECK(x->seq == S.rec.s[i - 1].seq + 1, "sample %d: seq %llu after %llu", i,
                      (unsigned long long)x->seq, (unsigned long long)S.rec.s[i - 1].seq);
    }
}

/* "events with per-event sequence numbers"; copy and loan (zero-copy) publish. */
static void test_events_in_order_with_sequence_numbers(void)
{
    consumer_side(GWT_EV_PLAIN, GWIPC_UPDATES);
    gwt_send(&S.prov, "pub 5");
    gwt_expect(&S.prov, S.node, "published 5 0", NULL, 0, 5 * SEC);
    gwt_rec_wait(&S.rec, S.node, 5, 5 * SEC);
    gwt_send(&S.prov, "loan 3");
    gwt_expect(&S.prov, S.node, "published 3 0", NULL, 0, 5 * SEC);
    gwt_rec_wait(&S.rec, S.node, 8, 5 * SEC);
    check_run(0, 5, "ev", 0);
    check_run(5, 3, "loan", 5);
    gwt_dispatch(S.node, 100000);
    assert_int_equal(gwt_rec_n(&S.rec), 8); /* nothing extra */
    side_end();
    assert_int_equal(S.rec.destroyed, 2); /* the subscription's and the proxy's destroy */
}

/* Kept samples stay readable and, sent by slot (GWIPC_OFFER_NO_INLINE),
 * hold their slot until released. */
static gwipc_sample kept[3];
static int n_kept;
static void keep_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)p;
    if (n_kept < 3 && gwipc_sample_keep(s, &kept[n_kept]) == GWIPC_OK)
        n_kept++;
}

static int provider_holds(int n)
{
    char *resp = NULL, want[32];
    size_t len;
    if (gwipc_sipc_query(S.status, "status", 6, 5 * SEC, &resp, &len, NULL) != GWIPC_OK)
        return 0;
    snprintf(want, sizeof want, "\"holds\":%d", n);
    int ok = gwt_contains(resp, want);
    gwipc_free(resp);
    return ok;
}

/* Subscribes keep_sample and has the provider (with option opt) publish
 * three events, which it keeps. */
static void keep_three(const char *opt)
{
    provider_opt = opt;
    consumer_side(-1, 0);
    n_kept = 0;
    GWT_RC(gwipc_proxy_subscribe(S.p, GWT_EV_PLAIN, GWIPC_UPDATES, keep_sample, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(S.node, gwt_rec_suback(&S.rec, GWT_EV_PLAIN) == 0, 5 * SEC);
    gwt_send(&S.prov, "pub 3");
    GWT_UNTIL(S.node, n_kept == 3, 5 * SEC);
}

static void test_kept_samples_hold_slots_until_released(void)
{
    keep_three("noinline");
    gwt_dispatch(S.node, 50000);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "ev %d", i);
        assert_int_equal(kept[i].kept, 1);
        assert_int_equal(kept[i].len, strlen(want));
        assert_memory_equal(kept[i].data, want, kept[i].len); /* still mapped, still ours */
    }
    GWT_UNTIL(S.node, provider_holds(3), 5 * SEC);
    /* Samples not kept were recycled meanwhile; releasing A and then its
     * copy must release A once, never another sample (pitfall 17: handle
     * aliasing). */
    gwt_send(&S.prov, "pub 2");
    gwt_dispatch(S.node, 100000);
    gwipc_sample copy = kept[0];
    gwipc_sample_release(&kept[0]);
    gwipc_sample_release(&kept[0]);
    gwipc_sample_release(&copy); /* "later releases of it or of copies do nothing" */
    gwt_dispatch(S.node, 200000);
    GWT_UNTIL(S.node, provider_holds(2), 5 * SEC);
    gwt_dispatch(S.node, 200000);
    GWT_CHECK(provider_holds(2), "releasing one kept sample three times released more than one slot");
    assert_memory_equal(kept[1].data, "ev 1", 4); /* the others are untouched */
    assert_memory_equal(kept[2].data, "ev 2", 4);
    gwipc_sample_release(&kept[1]);
    gwipc_sample_release(&kept[2]);
    GWT_UNTIL(S.node, provider_holds(0), 5 * SEC);
    side_end();
}

/* Small updates travel inline (a copy in the ring): kept, they hold no
 * slot of the provider's, and stay as they were while later updates reuse
 * the ring and the slots. */
static void test_kept_inline_samples_are_copies(void)
{
    keep_three(NULL);
    GWT_UNTIL(S.node, provider_holds(0), 5 * SEC); /* kept, yet no slot held */
    gwt_send(&S.prov, "pub 200");                  /* around the ring, through every slot */
    gwt_expect(&S.prov, S.node, "published 200 0", NULL, 0, 10 * SEC);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "ev %d", i);
        assert_int_equal(kept[i].len, strlen(want));
        assert_memory_equal(kept[i].data, want, kept[i].len);
        gwipc_sample_release(&kept[i]);
    }
    side_end();
}

/* Inside one callback: a second keep names the first keep's sample; once
 * that is released the delivery cannot be kept again (it used to hand out
 * the released handle, whose memory went with the proxy). */
static struct {
    int n, rc_again, rc_after_release, same;
} KR;
static void keep_release_keep(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)ud, (void)p;
    gwipc_sample a, b, c;
    if (gwipc_sample_keep(s, &a) != GWIPC_OK)
        return;
    KR.rc_again = gwipc_sample_keep(s, &b);
    KR.same = KR.rc_again == GWIPC_OK && memcmp(a.private_, b.private_, sizeof a.private_) == 0;
    gwipc_sample_release(&a);
    KR.rc_after_release = gwipc_sample_keep(s, &c);
    if (KR.rc_after_release == GWIPC_OK)
        gwipc_sample_release(&c);
    KR.n++;
}

static void test_a_released_keep_cannot_be_kept_again(void)
{
    consumer_side(-1, 0);
    memset(&KR, 0, sizeof KR);
    GWT_RC(gwipc_proxy_subscribe(S.p, GWT_EV_PLAIN, GWIPC_UPDATES, keep_release_keep, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(S.node, gwt_rec_suback(&S.rec, GWT_EV_PLAIN) == 0, 5 * SEC);
    gwt_send(&S.prov, "pub 1");
    GWT_UNTIL(S.node, KR.n == 1, 5 * SEC);
    GWT_RC(KR.rc_again, GWIPC_OK);
    GWT_CHECK(KR.same, "a second keep named another handle");
    GWT_RC(KR.rc_after_release, GWIPC_E_BADHANDLE);
    GWT_UNTIL(S.node, provider_holds(0), 5 * SEC); /* the slot went back once */
    side_end();
}

/* Fields: the cached value at subscription, request_update (requested = 1),
 * and a resubscription gets the latest value. */
static void test_field_initial_value_and_request_update(void)
{
    consumer_side(-1, 0);
    gwt_send(&S.prov, "field v1");
    gwt_expect(&S.prov, S.node, "published 1 0", NULL, 0, 5 * SEC);
    GWT_RC(gwipc_proxy_subscribe(S.p, GWT_EV_FIELD, GWIPC_INITIAL_VALUE, gwt_on_sample, &S.rec, NULL), GWIPC_OK);
    gwt_rec_wait(&S.rec, S.node, 1, 5 * SEC);
    assert_int_equal(S.rec.s[0].event, GWT_EV_FIELD);
    assert_string_equal(S.rec.s[0].data, "v1");
    int state = -1;
    GWT_RC(gwipc_proxy_subscription_state(S.p, GWT_EV_FIELD, &state), GWIPC_OK);
    assert_int_equal(state, GWIPC_SUBSCRIPTION_ACTIVE);

    GWT_RC(gwipc_proxy_request_update(S.p, GWT_EV_FIELD), GWIPC_OK);
    gwt_rec_wait(&S.rec, S.node, 2, 5 * SEC);
    assert_string_equal(S.rec.s[1].data, "v1");
    assert_int_equal(S.rec.s[1].requested, 1);

    gwt_send(&S.prov, "field v2");
    gwt_rec_wait(&S.rec, S.node, 3, 5 * SEC);
    assert_string_equal(S.rec.s[2].data, "v2");
    assert_int_equal(S.rec.s[2].requested, 0);

    GWT_RC(gwipc_proxy_unsubscribe(S.p, GWT_EV_FIELD), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(S.p, GWT_EV_FIELD, GWIPC_INITIAL_VALUE, gwt_on_sample, &S.rec, NULL), GWIPC_OK);
    gwt_rec_wait(&S.rec, S.node, 4, 5 * SEC);
    assert_string_equal(S.rec.s[3].data, "v2");
    side_end();
}

/* A field with no value cached: the provider's on_update_request runs and
 * its publish answers the request. */
static void test_field_update_request_reaches_provider(void)
{
    consumer_side(GWT_EV_FIELD, GWIPC_INITIAL_VALUE);
    gwt_dispatch(S.node, 200000);
    GWT_RC(gwipc_proxy_request_update(S.p, GWT_EV_FIELD), GWIPC_OK);
    gwt_expect(&S.prov, S.node, "update-request 1", NULL, 0, 5 * SEC);
    GWT_UNTIL(S.node, gwt_rec_n(&S.rec) > 0 && S.rec.s[gwt_rec_n(&S.rec) - 1].requested == 1, 5 * SEC);
    assert_string_equal(S.rec.s[gwt_rec_n(&S.rec) - 1].data, "fresh");
    side_end();
}

/* Withdrawn and offered again: availability follows, the subscription is
 * "kept across loss and rebinding". */
static void test_availability_follows_withdraw_and_reoffer(void)
{
    consumer_side(GWT_EV_PLAIN, GWIPC_UPDATES);
    gwt_send(&S.prov, "withdraw");
    GWT_UNTIL(S.node, gwt_rec_available(&S.rec) == 0, 5 * SEC);
    assert_int_equal(gwipc_proxy_is_available(S.p), 0);
    gwt_send(&S.prov, "reoffer");
    GWT_UNTIL(S.node, gwt_rec_available(&S.rec) == 1, 5 * SEC);
    assert_int_equal(gwipc_proxy_is_available(S.p), 1);
    GWT_UNTIL(S.node, gwt_rec_suback(&S.rec, GWT_EV_PLAIN) == 0, 5 * SEC);
    int state = -1;
    GWT_UNTIL(S.node, gwipc_proxy_subscription_state(S.p, GWT_EV_PLAIN, &state) == GWIPC_OK &&
                          state == GWIPC_SUBSCRIPTION_ACTIVE, 5 * SEC);
    gwt_send(&S.prov, "pub 1");
    gwt_rec_wait(&S.rec, S.node, 1, 5 * SEC);
    assert_int_equal(S.rec.avail_events, 3);
    side_end();
}

/* ---- Methods: this process calls the gwt_peer provider ----------------------- */

static struct completion {
    pthread_mutex_t mu;
    int n, code, app_code, destroyed;
    gwipc_call_id id;
    char data[64];
    gwipc_reply kept;
} C;

static void on_reply(void *ud, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *err)
{
    struct completion *c = ud;
    (void)p;
    pthread_mutex_lock(&c->mu);
    c->n++;
    c->id = id;
    c->code = err ? err->code : 0;
    c->app_code = err ? err->app_code : 0;
    snprintf(c->data, sizeof c->data, "%.*s", r ? (int)r->len : 0, r ? (const char *)r->data : "");
    if (r && !err)
        gwipc_reply_keep(r, &c->kept);
    pthread_mutex_unlock(&c->mu);
}

static void on_reply_destroy(void *ud)
{
    struct completion *c = ud;
    pthread_mutex_lock(&c->mu);
    c->destroyed++;
    pthread_mutex_unlock(&c->mu);
}

static int completions(void)
{
    pthread_mutex_lock(&C.mu);
    int n = C.n + 100 * C.destroyed;
    pthread_mutex_unlock(&C.mu);
    return n;
}

static void reset_completion(void)
{
    gwipc_reply_release(&C.kept);
    memset(&C, 0, sizeof C);
    pthread_mutex_init(&C.mu, NULL);
}

/* A blocking call; returns its code, the reply's text into data. */
static int call(uint16_t m, const char *req, int64_t timeout, char *data, size_t cap, gwipc_error *err)
{
    gwipc_reply r;
    memset(&r, 0x55, sizeof r);
    int rc = gwipc_proxy_call(S.p, m, req, strlen(req), timeout, &r, err);
    snprintf(data, cap, "%.*s", rc == GWIPC_OK || rc == GWIPC_E_APP ? (int)r.len : 0,
             rc == GWIPC_OK || rc == GWIPC_E_APP ? (const char *)r.data : "");
    if (rc != GWIPC_OK && rc != GWIPC_E_APP) {
        static const gwipc_reply zero;
        GWT_CHECK(memcmp(&r, &zero, sizeof r) == 0, "reply not zeroed after %s (\"on other errors it is zeroed\")",
                  gwipc_error_name(rc));
    }
    gwipc_reply_release(&r);
    gwipc_reply_release(&r); /* "later releases do nothing" */
    return rc;
}

static void test_methods_blocking(void)
{
    char data[64];
    gwipc_error err = GWIPC_ERROR_INIT;
    consumer_side(-1, 0);
    GWT_RC(gwipc_node_run_thread(S.node), GWIPC_OK); /* someone must dispatch while we block */

    GWT_RC(call(GWT_M_ECHO, "hello", 5 * SEC, data, sizeof data, &err), GWIPC_OK);
    assert_string_equal(data, "hello");
    assert_int_equal(err.code, GWIPC_OK);
    assert_string_equal(err.message, "");
    GWT_RC(call(GWT_M_ECHO, "", 5 * SEC, data, sizeof data, NULL), GWIPC_OK);
    assert_string_equal(data, "");

    /* Application error: code and payload. */
    GWT_RC(call(GWT_M_FAIL, "x", 5 * SEC, data, sizeof data, &err), GWIPC_E_APP);
    assert_int_equal(err.code, GWIPC_E_APP);
    assert_int_equal(err.app_code, GWT_APP_CODE);
    assert_string_equal(data, "bad:x");

    /* Answered later from another thread of the provider. */
    GWT_RC(call(GWT_M_SLOW, "100", 5 * SEC, data, sizeof data, NULL), GWIPC_OK);
    assert_string_equal(data, "late");
    gwt_expect(&S.prov, NULL, "late-reply 0", NULL, 0, 5 * SEC);

    /* Timeout: the provider is told (on_cancel), its late answer is refused. */
    int64_t t0 = gwt_now_us();
    GWT_RC(call(GWT_M_SLOW, "800", 150000, data, sizeof data, &err), GWIPC_E_TIMEOUT);
    int64_t took = gwt_now_us() - t0;
    GWT_CHECK(took >= 140000 && took < 700000, "a 150 ms timeout took %lld ms", (long long)(took / 1000));
    assert_int_equal(err.code, GWIPC_E_TIMEOUT);
    gwt_expect(&S.prov, NULL, "cancel 2", NULL, 0, 5 * SEC);
    char line[128];
    gwt_expect(&S.prov, NULL, "late-reply", line, sizeof line, 5 * SEC);
    GWT_CHECK(atoi(line + 11) == GWIPC_E_CANCELLED, "the provider's late answer returned %s, want GWIPC_E_CANCELLED",
              line + 11);

    /* Fire-and-forget. */
    GWT_RC(gwipc_proxy_send(S.p, GWT_M_FF, "ping1", 5), GWIPC_OK);
    gwt_expect(&S.prov, NULL, "call 3 1 ping1", NULL, 0, 5 * SEC);
    gwipc_node_stop(S.node);
    side_end();
}

static void test_methods_async_reply_cancel_timeout(void)
{
    consumer_side(-1, 0);
    reset_completion();
    gwipc_call_id id = 0;

    /* Success: the reply is borrowed in the callback, kept there. */
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_ECHO, "abc", 3, 5 * SEC, on_reply, &C, on_reply_destroy, &id), GWIPC_OK);
    GWT_UNTIL(S.node, completions() == 101, 5 * SEC); /* one completion, then its destroy */
    assert_int_equal(C.id, id);
    assert_int_equal(C.code, 0);
    assert_string_equal(C.data, "abc");
    assert_int_equal(C.kept.len, 3);
    assert_memory_equal(C.kept.data, "abc", 3);
    gwipc_reply_release(&C.kept);

    /* Cancel: one completion with GWIPC_E_CANCELLED; the provider is told. */
    reset_completion();
    gwipc_call_id id2 = 0;
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_SLOW, "1500", 4, GWIPC_FOREVER, on_reply, &C, on_reply_destroy, &id2),
           GWIPC_OK);
    assert_true(id2 != id);
    gwt_expect(&S.prov, S.node, "call 2 0 1500", NULL, 0, 5 * SEC);
    GWT_RC(gwipc_proxy_cancel(S.p, id2), GWIPC_OK);
    GWT_UNTIL(S.node, completions() == 101, 5 * SEC);
    assert_int_equal(C.code, GWIPC_E_CANCELLED);
    assert_string_equal(C.data, "");
    GWT_RC(gwipc_proxy_cancel(S.p, id2), GWIPC_E_NOTFOUND);
    gwt_expect(&S.prov, S.node, "cancel 2", NULL, 0, 5 * SEC);
    gwt_expect(&S.prov, S.node, "late-reply", NULL, 0, 5 * SEC);

    /* Timeout. */
    reset_completion();
    int64_t t0 = gwt_now_us();
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_SLOW, "1000", 4, 100000, on_reply, &C, on_reply_destroy, NULL),
           GWIPC_OK);
    GWT_UNTIL(S.node, completions() == 101, 5 * SEC);
    assert_int_equal(C.code, GWIPC_E_TIMEOUT);
    GWT_CHECK(gwt_now_us() - t0 < 900000, "a 100 ms timeout took %lld ms", (long long)((gwt_now_us() - t0) / 1000));

    /* Application error through the completion. */
    reset_completion();
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_FAIL, "q", 1, 5 * SEC, on_reply, &C, on_reply_destroy, NULL), GWIPC_OK);
    GWT_UNTIL(S.node, completions() == 101, 5 * SEC);
    assert_int_equal(C.code, GWIPC_E_APP);
    assert_int_equal(C.app_code, GWT_APP_CODE);
    assert_string_equal(C.data, "bad:q");
    side_end();
}

/* A provider dies with a call pending: the call completes once, with an
 * error ("the service going away"); availability drops. */
static void test_pending_call_completes_when_provider_dies(void)
{
    consumer_side(-1, 0);
    reset_completion();
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_SLOW, "5000", 4, GWIPC_FOREVER, on_reply, &C, on_reply_destroy, NULL),
           GWIPC_OK);
    gwt_expect(&S.prov, S.node, "call 2 0 5000", NULL, 0, 5 * SEC);
    gwt_send(&S.prov, "crash");
    GWT_CHECK(gwt_wait_exit(&S.prov, S.node, 5 * SEC) == 9, "gwt_peer did not crash as asked");
    GWT_UNTIL(S.node, completions() == 101, 5 * SEC);
    GWT_CHECK(C.code == GWIPC_E_NOT_AVAILABLE || C.code == GWIPC_E_PEER_LOST || C.code == GWIPC_E_CLOSED,
              "completion code %s", gwipc_error_name(C.code));
    GWT_UNTIL(S.node, gwt_rec_available(&S.rec) == 0, 5 * SEC);
    gwt_dispatch(S.node, 100000);
    assert_int_equal(completions(), 101); /* exactly one */
    gwt_node_close(S.node);
}

/* The node's fd alone drives everything, timers included: a loop that only
 * dispatches when poll() says the fd is readable (and again at once while a
 * dispatch returns GWIPC_DISPATCH_MORE, as the header says) sees a call
 * time out with no other traffic ("It includes the node's timers, so there
 * is no timeout to query"), and a burst larger than one dispatch slice, much
 * of it through the shared-memory ring, is all delivered. */
static int fd_driven_until(int (*done)(void), int64_t timeout_us)
{
    int fd = gwipc_node_fd(S.node);
    int64_t dl = gwt_now_us() + timeout_us;
    GWT_CHECK(fd >= 0, "gwipc_node_fd: %d", fd);
    while (!done() && gwt_now_us() < dl) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)((dl - gwt_now_us()) / 1000) + 1);
        if (r > 0)
            gwt_dispatch(S.node, 0);
    }
    return done();
}
static int one_completion(void) { return completions() >= 1; }
static int burst;
static int burst_samples(void) { return gwt_rec_n(&S.rec) >= burst * 25; }

static void test_fd_readiness_alone_drives_timers_and_bursts(void)
{
    consumer_side(GWT_EV_PLAIN, GWIPC_UPDATES);
    reset_completion();
    int64_t t0 = gwt_now_us();
    GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_SLOW, "3000", 4, 100000, on_reply, &C, NULL, NULL), GWIPC_OK);
    GWT_CHECK(fd_driven_until(one_completion, 2 * SEC), "a 100 ms call timeout never made the fd readable");
    int64_t took = gwt_now_us() - t0;
    assert_int_equal(C.code, GWIPC_E_TIMEOUT);
    GWT_CHECK(took >= 90000 && took < 1 * SEC, "the timeout came after %lld ms", (long long)(took / 1000));
    for (burst = 1; burst <= 10; burst++) { /* 25 a burst: below a subscriber's share (32) */
        gwt_send(&S.prov, "pub 25");
        GWT_CHECK(fd_driven_until(burst_samples, 10 * SEC), "fd-driven loop got %d of %d samples",
                  gwt_rec_n(&S.rec), burst * 25);
    }
    for (int i = 1; i < gwt_rec_n(&S.rec); i++)
        assert_int_equal(S.rec.s[i].seq, S.rec.s[i - 1].seq + 1);
    side_end();
}

/* gwipc_config_set_rings and gwipc_config_set_spin: events and calls work
 * with rings off (everything on the socket) and with small rings (64
 * entries: a burst of 25 events and their consumes fill them), both with a
 * spinning consumer; the status says which carrier the peer uses. */
static void test_rings_off_or_small_with_spin(void)
{
    static const uint32_t rings[] = {0, 64};
    for (size_t i = 0; i < sizeof rings / sizeof rings[0]; i++) {
        gwipc_config *cfg = NULL;
        GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
        GWT_RC(gwipc_config_set_name(cfg, "e2e-consumer"), GWIPC_OK);
        GWT_RC(gwipc_config_set_rings(cfg, rings[i]), GWIPC_OK);
        GWT_RC(gwipc_config_set_spin(cfg, 200), GWIPC_OK);
        consumer_side_config(GWT_EV_PLAIN, GWIPC_UPDATES, cfg);
        gwipc_config_free(cfg);
        for (int b = 1; b <= 4; b++) {
            gwt_send(&S.prov, "pub 25");
            gwt_rec_wait(&S.rec, S.node, b * 25, 10 * SEC);
        }
        for (int k = 1; k < gwt_rec_n(&S.rec); k++)
            assert_int_equal(S.rec.s[k].seq, S.rec.s[k - 1].seq + 1);
        reset_completion();
        GWT_RC(gwipc_proxy_call_async(S.p, GWT_M_ECHO, "ping", 4, 5 * SEC, on_reply, &C, NULL, NULL), GWIPC_OK);
        GWT_UNTIL(S.node, completions() == 1, 5 * SEC);
        assert_int_equal(C.code, GWIPC_OK);
        assert_string_equal(C.data, "ping");
        reset_completion();
        char *js = gwt_status_json(S.node);
        const char *want = rings[i] ? "\"ring\":true" : "\"ring\":false";
        GWT_CHECK(gwt_contains(js, want), "rings %u: no %s in the status: %s", rings[i], want, js);
        free(js);
        side_end();
    }
}

/* "Waits up to timeout_usec until the node has work, without doing it." */
static void test_node_wait_reports_work_without_doing_it(void)
{
    consumer_side(GWT_EV_PLAIN, GWIPC_UPDATES);
    gwt_dispatch(S.node, 100000);
    int64_t t0 = gwt_now_us();
    int rc = gwipc_node_wait(S.node, 100000);
    GWT_CHECK(rc == 0 || rc == 1, "gwipc_node_wait: %s", gwipc_error_name(rc));
    GWT_CHECK(rc == 1 || gwt_now_us() - t0 >= 90000, "wait returned 0 before its timeout");
    gwt_send(&S.prov, "pub 1");
    gwt_expect(&S.prov, NULL, "published 1 0", NULL, 0, 5 * SEC);
    t0 = gwt_now_us();
    int64_t dl = t0 + 5 * SEC;
    while ((rc = gwipc_node_wait(S.node, 100000)) == 0 && gwt_now_us() < dl) {
    }
    GWT_RC(rc, 1);
    assert_int_equal(gwt_rec_n(&S.rec), 0); /* no callback ran */
    gwt_rec_wait(&S.rec, S.node, 1, 5 * SEC);
    side_end();
}

/* ---- This process as the provider; gwt_peer consumers ------------------------ */

static struct provider {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gwipc_call queue[16];
    int nq, quit;
    int cancels, ff;
    char ff_data[64];
    gwipc_call slow; /* the unanswered slow call */
    int have_slow;
    int subscribed[GWT_EVENTS];
} P;

static void p_on_call(void *ud, gwipc_offer *o, const gwipc_call *c)
{
    (void)ud, (void)o;
    pthread_mutex_lock(&P.mu);
    if (c->fire_and_forget) {
        P.ff++;
        snprintf(P.ff_data, sizeof P.ff_data, "%.*s", (int)c->len, (const char *)c->data);
    } else if (c->method == GWT_M_SLOW) {
        P.slow = *c;
        P.have_slow = 1;
    } else if (P.nq < 16) {
        P.queue[P.nq++] = *c; /* answered by the worker thread */
        pthread_cond_signal(&P.cv);
    }
    pthread_mutex_unlock(&P.mu);
}

static void p_on_cancel(void *ud, gwipc_offer *o, const gwipc_call *c)
{
    (void)ud, (void)o, (void)c;
    pthread_mutex_lock(&P.mu);
    P.cancels++;
    pthread_mutex_unlock(&P.mu);
}

static void p_on_sub(void *ud, gwipc_offer *o, uint16_t ev, int on)
{
    (void)ud, (void)o;
    if (ev < GWT_EVENTS)
        P.subscribed[ev] += on ? 1 : -1;
}

/* Answers queued calls from its own thread: "gwipc_call_reply ... Any thread". */
static void *p_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.quit && P.nq == 0)
            pthread_cond_wait(&P.cv, &P.mu);
        if (P.nq == 0)
            break;
        gwipc_call c = P.queue[--P.nq];
        pthread_mutex_unlock(&P.mu);
        if (c.method == GWT_M_FAIL)
            gwipc_call_fail(&c, GWT_APP_CODE, "bad", 3);
        else
            gwipc_call_reply(&c, c.data, c.len);
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static gwipc_offer *provider_offer(gwipc_node *node)
{
    static const uint16_t fields[] = {GWT_EV_FIELD};
    gwipc_service_id svc = gwt_service("one");
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    gwipc_offer *o = NULL;
    op.events = GWT_EVENTS;
    op.methods = GWT_METHODS;
    op.fields = fields;
    op.n_fields = 1;
    op.on_call = p_on_call;
    op.on_cancel = p_on_cancel;
    op.on_subscription = p_on_sub;
    GWT_RC(gwipc_node_offer(node, &svc, &op, &o, NULL), GWIPC_OK);
    return o;
}

static void provider_reset(void)
{
    memset(&P, 0, sizeof P);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
}

/* One update reaches both subscribers, with the same sequence numbers. */
static void test_fan_out_to_two_consumers(void)
{
    char sock[256], line[256], lines[2][5][256];
    provider_reset();
    gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "e2e-provider", NULL);
    gwipc_offer *o = provider_offer(node);
    gwt_child c[2];
    for (int i = 0; i < 2; i++) {
        gwt_peer_consumer(&c[i], sock, i ? "fan-2" : "fan-1");
        gwt_expect(&c[i], node, "suback 0 0", NULL, 0, 10 * SEC);
    }
    GWT_UNTIL(node, P.subscribed[GWT_EV_PLAIN] == 1, 5 * SEC); /* "the first subscriber arrived" once */
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "fan %d", i);
        GWT_RC(gwipc_offer_publish(o, GWT_EV_PLAIN, line, strlen(line), 0), GWIPC_OK);
    }
    for (int i = 3; i < 5; i++) {
        gwipc_loan loan = {0};
        GWT_RC(gwipc_offer_loan(o, GWT_EV_PLAIN, 0, &loan), GWIPC_OK);
        assert_int_equal(loan.event, GWT_EV_PLAIN);
        int n = snprintf(loan.data, loan.capacity, "fan %d", i);
        GWT_RC(gwipc_loan_publish(&loan, (size_t)n), GWIPC_OK);
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 5; i++)
            gwt_expect(&c[k], node, "sample 0 ", lines[k][i], sizeof lines[k][i], 5 * SEC);
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, " 0 5 fan %d", i);
        assert_string_equal(lines[0][i], lines[1][i]); /* same seq, same data */
        GWT_CHECK(gwt_contains(lines[0][i], want), "consumer line \"%s\" lacks \"%s\"", lines[0][i], want);
    }
    char *json = gwt_status_json(node);
    GWT_CHECK(gwt_contains(json, "\"published\":5"), "status: %s", json);
    free(json);
    for (int i = 0; i < 2; i++)
        GWT_CHECK(gwt_wait_exit(&c[i], node, 10 * SEC) == 0, "consumer %d did not exit 0", i);
    GWT_UNTIL(node, P.subscribed[GWT_EV_PLAIN] == 0, 5 * SEC); /* "the last left" */
    gwt_node_close(node);
}

/* Calls into a C provider answered from a worker thread; app errors;
 * timeouts and cancels seen by the provider; fire-and-forget. */
static void test_calls_answered_from_a_worker_thread(void)
{
    char sock[256], line[256];
    provider_reset();
    gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "e2e-provider", NULL);
    provider_offer(node);
    pthread_t worker;
    pthread_create(&worker, NULL, p_worker, NULL);
    gwt_child c;
    gwt_peer_consumer(&c, sock, "caller");
    gwt_expect(&c, node, "avail 1", NULL, 0, 10 * SEC);

    gwt_send(&c, "call t1 %d hi", GWT_M_ECHO);
    gwt_expect(&c, node, "reply t1 ", line, sizeof line, 5 * SEC);
    assert_string_equal(line, "reply t1 0 0 2 hi");
    gwt_send(&c, "call t2 %d x", GWT_M_FAIL);
    gwt_expect(&c, node, "reply t2 ", line, sizeof line, 5 * SEC);
    assert_string_equal(line, "reply t2 -23 42 3 bad");

    /* The caller times out: on_cancel; is_cancelled; answering is refused. */
    gwt_send(&c, "call t3 %d 5000 200", GWT_M_SLOW);
    gwt_expect(&c, node, "reply t3 ", line, sizeof line, 5 * SEC);
    assert_string_equal(line, "reply t3 -18 0 0 ");
    GWT_UNTIL(node, P.cancels == 1, 5 * SEC);
    assert_true(P.have_slow);
    assert_int_equal(gwipc_call_is_cancelled(&P.slow), 1);
    GWT_RC(gwipc_call_reply(&P.slow, "x", 1), GWIPC_E_CANCELLED);

    /* The caller cancels. */
    P.have_slow = 0;
    gwt_send(&c, "call t4 %d 5000", GWT_M_SLOW);
    GWT_UNTIL(node, P.have_slow, 5 * SEC);
    assert_int_equal(gwipc_call_is_cancelled(&P.slow), 0);
    gwt_send(&c, "cancel t4");
    gwt_expect(&c, node, "cancelled 0", NULL, 0, 5 * SEC);
    gwt_expect(&c, node, "reply t4 ", line, sizeof line, 5 * SEC);
    assert_string_equal(line, "reply t4 -19 0 0 ");
    GWT_UNTIL(node, P.cancels == 2, 5 * SEC);
    GWT_RC(gwipc_call_fail(&P.slow, 1, NULL, 0), GWIPC_E_CANCELLED);

    gwt_send(&c, "send %d zz", GWT_M_FF);
    gwt_expect(&c, node, "sent 0", NULL, 0, 5 * SEC);
    GWT_UNTIL(node, P.ff == 1, 5 * SEC);
    assert_string_equal(P.ff_data, "zz");

    GWT_CHECK(gwt_wait_exit(&c, node, 10 * SEC) == 0, "the consumer did not exit 0");
    pthread_mutex_lock(&P.mu);
    P.quit = 1;
    pthread_cond_signal(&P.cv);
    pthread_mutex_unlock(&P.mu);
    pthread_join(worker, NULL);
    gwt_node_close(node);
}

/* ---- Find ---------------------------------------------------------------------- */

static struct finds {
    int n;
    struct {
        int available;
        char id[64], instance[64];
        uint16_t major, minor;
        gwipc_peer_id peer;
    } ev[16];
    int destroyed;
} F1, F2, F3;

static void on_find(void *ud, gwipc_finder *f, const gwipc_find_event *e)
{
    struct finds *x = ud;
    (void)f;
    if (x->n < 16) {
        x->ev[x->n].available = e->available;
        snprintf(x->ev[x->n].id, 64, "%s", e->service.id);
        snprintf(x->ev[x->n].instance, 64, "%s", e->service.instance);
        x->ev[x->n].major = e->service.major;
        x->ev[x->n].minor = e->service.minor;
        x->ev[x->n].peer = e->peer;
    }
    x->n++;
}

static void on_find_destroy(void *ud) { ((struct finds *)ud)->destroyed++; }

static void test_find_appear_and_disappear(void)
{
    char sock[256];
    gwt_child prov;
    memset(&F1, 0, sizeof F1), memset(&F2, 0, sizeof F2), memset(&F3, 0, sizeof F3);
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "find-provider");
    gwipc_node *node = gwt_dial(sock, "finder");
    gwipc_finder *any = NULL, *newer = NULL, *other = NULL;
    GWT_RC(gwipc_node_find(node, "gwt.test", 1, 0, "*", on_find, &F1, on_find_destroy, &any), GWIPC_OK);
    GWT_RC(gwipc_node_find(node, "gwt.test", 1, 3, NULL, on_find, &F2, on_find_destroy, &newer), GWIPC_OK);
    GWT_RC(gwipc_node_find(node, "gwt.test", 1, 0, "two", on_find, &F3, on_find_destroy, &other), GWIPC_OK);
    GWT_UNTIL(node, F1.n == 1, 10 * SEC);
    assert_int_equal(F1.ev[0].available, 1);
    assert_string_equal(F1.ev[0].id, "gwt.test");
    assert_string_equal(F1.ev[0].instance, "one");
    assert_int_equal(F1.ev[0].major, 1);
    assert_int_equal(F1.ev[0].minor, 2); /* "as the peer offers it (its own minor)" */
    assert_true(F1.ev[0].peer != 0);

    gwt_send(&prov, "withdraw");
    GWT_UNTIL(node, F1.n == 2, 5 * SEC);
    assert_int_equal(F1.ev[1].available, 0);
    gwt_send(&prov, "reoffer");
    GWT_UNTIL(node, F1.n == 3, 5 * SEC);
    assert_int_equal(F1.ev[2].available, 1);
    gwt_send(&prov, "crash");
    GWT_CHECK(gwt_wait_exit(&prov, node, 5 * SEC) == 9, "gwt_peer did not crash as asked");
    GWT_UNTIL(node, F1.n == 4, 5 * SEC);
    assert_int_equal(F1.ev[3].available, 0);
    assert_int_equal(F2.n, 0); /* minor 2 < min_minor 3 */
    assert_int_equal(F3.n, 0); /* another instance */

    gwipc_finder_close(any);
    gwt_dispatch(node, 10000); /* destroy runs "inside a dispatch, or inside the close" */
    assert_int_equal(F1.destroyed, 1); /* "Stops watching; destroy runs." */

    gwipc_finder_close(newer);
    gwipc_finder_close(other);
    gwt_node_close(node);
    assert_int_equal(F2.destroyed, 1);
    assert_int_equal(F3.destroyed, 1);
}

/* ---- Peers ---------------------------------------------------------------------- */

static struct peers {
    int up, down;
    char name[64];
    int pid;
    unsigned uid;
    gwipc_peer_id id;
    int why; /* 0: NULL (orderly), else why->code */
    int destroyed;
} PR;

static void on_up(void *ud, gwipc_node *n, const gwipc_peer_info *p)
{
    (void)ud, (void)n;
    PR.up++;
    snprintf(PR.name, sizeof PR.name, "%s", p->name);
    PR.pid = p->pid;
    PR.uid = p->uid;
    PR.id = p->id;
}

static void on_down(void *ud, gwipc_node *n, const gwipc_peer_info *p, const gwipc_error *why)
{
    (void)ud, (void)n, (void)p;
    PR.down++;
    PR.why = why ? why->code : 0;
}

static void on_peers_destroy(void *ud)
{
    (void)ud;
    PR.destroyed++;
}

static void test_peer_callbacks_and_userdata(void)
{
    char sock[256];
    gwipc_config *cfg = NULL;
    gwipc_node *node = NULL;
    memset(&PR, 0, sizeof PR);
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_peer_callbacks(cfg, on_up, on_down, &PR, on_peers_destroy), GWIPC_OK);
    GWT_RC(gwipc_node_listen(gwt_path(sock, sizeof sock, "l.sock"), cfg, &node, NULL), GWIPC_OK);
    gwipc_config_free(cfg); /* the callbacks stay registered with the node */
    assert_int_equal(PR.destroyed, 0);

    gwt_child c;
    gwt_peer_consumer(&c, sock, "peer-one");
    GWT_UNTIL(node, PR.up == 1, 10 * SEC);
    assert_string_equal(PR.name, "peer-one");
    assert_int_equal(PR.pid, c.pid); /* kernel-verified credentials */
    assert_int_equal(PR.uid, getuid());
    int marker = 7;
    void *ud = NULL;
    GWT_RC(gwipc_node_set_peer_userdata(node, PR.id, &marker), GWIPC_OK);
    GWT_RC(gwipc_node_get_peer_userdata(node, PR.id, &ud), GWIPC_OK);
    assert_ptr_equal(ud, &marker);
    GWT_CHECK(gwt_wait_exit(&c, node, 10 * SEC) == 0, "consumer did not exit 0"); /* says goodbye */
    GWT_UNTIL(node, PR.down == 1, 5 * SEC);
    GWT_CHECK(PR.why == 0, "an orderly departure reported why = %s", gwipc_error_name(PR.why));
    GWT_RC(gwipc_node_get_peer_userdata(node, PR.id, &ud), GWIPC_E_NOTFOUND); /* "gone with the peer" */

    gwipc_peer_id first = PR.id;
    gwt_peer_consumer(&c, sock, "peer-two");
    GWT_UNTIL(node, PR.up == 2, 10 * SEC);
    assert_true(PR.id != first); /* "never reused" */
    gwt_send(&c, "crash");
    GWT_CHECK(gwt_wait_exit(&c, node, 5 * SEC) == 9, "gwt_peer did not crash as asked");
    GWT_UNTIL(node, PR.down == 2, 5 * SEC);
    GWT_RC(PR.why, GWIPC_E_PEER_LOST);
    gwt_node_close(node);
    assert_int_equal(PR.destroyed, 1); /* "after the config is freed and every such node closed" */
}

/* ---- Status ---------------------------------------------------------------------- */

static void test_status_json(void)
{
    consumer_side(GWT_EV_PLAIN, GWIPC_UPDATES);
    char *json = gwt_status_json(S.node);
    const char *want[] = {"\"name\":\"e2e-consumer\"", "\"role\":\"dialler\"", "\"gwt.test/one@1.2\"",
                          "\"available\":true", "\"connected\":true"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        GWT_CHECK(gwt_contains(json, want[i]), "the consumer's status lacks %s: %s", want[i], json);
    char pid[32];
    snprintf(pid, sizeof pid, "\"pid\":%d", (int)getpid());
    GWT_CHECK(gwt_contains(json, pid), "the consumer's status lacks %s", pid);
    free(json);

    /* The provider's, through its status endpoint: the same document. */
    char *resp = NULL;
    size_t len = 0;
    GWT_RC(gwipc_sipc_query(S.status, "status", 6, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    assert_int_equal(strlen(resp), len);
    const char *pwant[] = {"\"name\":\"gwt-provider\"", "\"role\":\"listener\"", "\"gwt.test/one@1.2\"",
                           "\"name\":\"e2e-consumer\""};
    for (size_t i = 0; i < sizeof pwant / sizeof pwant[0]; i++)
        GWT_CHECK(gwt_contains(resp, pwant[i]), "the provider's status lacks %s: %s", pwant[i], resp);
    gwipc_free(resp);
    side_end();
}

static void query(const char *path, const char *req, int want_rc, const char *want)
{
    char *resp = NULL;
    size_t len = 99;
    gwipc_error err = GWIPC_ERROR_INIT;
    int rc = gwipc_sipc_query(path, req, strlen(req), 5 * SEC, &resp, &len, &err);
    GWT_CHECK(rc == want_rc, "query \"%s\": %s (%s), want %s", req, gwipc_error_name(rc), err.message,
              gwipc_error_name(want_rc));
    if (rc == GWIPC_OK) {
        GWT_CHECK(resp != NULL, "query \"%s\": response NULL on success", req);
        assert_int_equal(resp[len], '\0'); /* "NUL-terminated beyond *len" */
        GWT_CHECK(want == NULL || gwt_contains(resp, want), "query \"%s\": \"%s\" lacks \"%s\"", req, resp, want);
    } else {
        GWT_CHECK(err.code == rc && err.message[0], "query \"%s\": err not filled", req);
    }
    gwipc_free(resp);
}

static void test_status_endpoint_builtins_and_commands(void)
{
    consumer_side(-1, 0);
    query(S.status, "ping", GWIPC_OK, "pong");
    query(S.status, "version", GWIPC_OK, "gwipc");
    query(S.status, "help", GWIPC_OK, "echo");
    query(S.status, "help", GWIPC_OK, "status");
    query(S.status, "echo hello world", GWIPC_OK, "hello world");
    char *resp = NULL;
    size_t len = 0;
    GWT_RC(gwipc_sipc_query(S.status, "echo abc", 8, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    assert_int_equal(len, 3);
    assert_string_equal(resp, "abc");
    gwipc_free(resp);
    /* "non-zero to fail the request (the client sees the reply cut short:
     * GWIPC_E_SIPC_TRUNCATED)": the command wrote "partial" before failing;
     * it must not arrive as an answer. */
    resp = NULL;
    int rc = gwipc_sipc_query(S.status, "fail", 4, 5 * SEC, &resp, &len, NULL);
    GWT_RC(rc, GWIPC_E_SIPC_TRUNCATED);
    assert_null(resp);
    char nothing[256];
    query(gwt_path(nothing, sizeof nothing, "nothing.sock"), "ping", GWIPC_E_SIPC_CONNECT, NULL);
    side_end();
}

/* An application command served by this process's node, queried by another
 * process while we dispatch. */
static int on_sum(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    char buf[256], out[32];
    long sum = 0;
    (void)ud;
    snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)req);
    char *tok = strtok(buf, " "); /* "sum" */
    while ((tok = strtok(NULL, " ")) != NULL)
        sum += atol(tok);
    if (sum < 0)
        return 1;
    int n = snprintf(out, sizeof out, "%ld", sum);
    return gwipc_writer_write(w, out, (size_t)n) == GWIPC_OK ? 0 : 1;
}

static int on_version(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    (void)ud, (void)req, (void)len;
    return gwipc_writer_write(w, "mine 1.0", 8) == GWIPC_OK ? 0 : 1;
}

static void test_application_command_in_this_process(void)
{
    char sock[256], status[256], line[256];
    gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "commands",
                                  gwt_path(status, sizeof status, "l.status"));
    GWT_RC(gwipc_node_handle_command(node, "sum", on_sum, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_handle_command(node, "version", on_version, NULL, NULL), GWIPC_OK);
    gwt_child q;
    gwt_spawn(&q, "c-tests/gwt_peer", "query", status, "sum 1 2 39", (char *)NULL);
    gwt_expect(&q, node, "response 0 2", NULL, 0, 10 * SEC);
    gwt_expect(&q, node, "42", NULL, 0, 5 * SEC);
    assert_int_equal(gwt_wait_exit(&q, node, 5 * SEC), 0);
    gwt_spawn(&q, "c-tests/gwt_peer", "query", status, "sum -5", (char *)NULL);
    gwt_expect(&q, node, "response ", line, sizeof line, 10 * SEC);
    int rc = 0;
    size_t len = 0;
    GWT_CHECK(sscanf(line, "response %d %zu", &rc, &len) == 2 && (rc < 0 || len == 0),
              "a failing command answered: %s", line);
    gwt_wait_exit(&q, node, 5 * SEC);
    gwt_spawn(&q, "c-tests/gwt_peer", "query", status, "version", (char *)NULL);
    gwt_expect(&q, node, "response 0 8", NULL, 0, 10 * SEC);
    gwt_expect(&q, node, "mine 1.0", NULL, 0, 5 * SEC); /* the built-in replaced */
    gwt_wait_exit(&q, node, 5 * SEC);
    gwt_node_close(node);
}

/* ---- Access control ------------------------------------------------------------- */

/* Rules: subscribing and calling gwt.test are denied to our uid (the
 * consumer process has it), requiring is not. */
static void test_rules_refuse_subscriptions_and_calls(void)
{
    char sock[256], line[256];
    uint32_t uid = (uint32_t)getuid();
    gwipc_config *cfg = NULL;
    gwipc_node *node = NULL;
    gwipc_rule r = GWIPC_RULE_INIT;
    r.service = "gwt.test";
    r.actions = GWIPC_ACTION_SUBSCRIBE | GWIPC_ACTION_CALL;
    r.uids = &uid;
    r.n_uids = 1;
    r.deny = 1;
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_add_rule(cfg, &r), GWIPC_OK);
    GWT_RC(gwipc_node_listen(gwt_path(sock, sizeof sock, "l.sock"), cfg, &node, NULL), GWIPC_OK);
    gwipc_config_free(cfg);
    provider_reset();
    provider_offer(node);
    gwt_child c;
    gwt_peer_consumer(&c, sock, "denied");
    gwt_expect(&c, node, "avail 1", NULL, 0, 10 * SEC); /* requiring is allowed */
    gwt_expect(&c, node, "suback 0 ", line, sizeof line, 5 * SEC);
    assert_string_equal(line, "suback 0 2"); /* "2 permission denied" */
    gwt_send(&c, "call t %d x", GWT_M_ECHO);
    gwt_expect(&c, node, "reply t ", line, sizeof line, 5 * SEC);
    GWT_CHECK(atoi(line + 8) == GWIPC_E_PERMISSION, "a denied call completed with: %s", line);
    assert_int_equal(P.nq, 0); /* never reached on_call */
    gwt_wait_exit(&c, node, 10 * SEC);
    char *json = gwt_status_json(node);
    GWT_CHECK(!gwt_contains(json, "\"policy_rejections\":0,"), "no policy rejection counted: %s", json);
    free(json);
    gwt_node_close(node);
}

/* An authorizer refusing every peer: none connects; each refusal counted. */
static int refusals;
static int refuse(void *ud, const gwipc_peer_info *p, char *reason, size_t cap)
{
    (void)ud, (void)p;
    refusals++;
    snprintf(reason, cap, "not today");
    return 1;
}

static void test_authorizer_refuses_peers(void)
{
    char sock[256];
    gwipc_config *cfg = NULL;
    gwipc_node *node = NULL;
    refusals = 0;
    memset(&PR, 0, sizeof PR);
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_authorize(cfg, refuse, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_config_set_peer_callbacks(cfg, on_up, on_down, NULL, NULL), GWIPC_OK);
    GWT_RC(gwipc_node_listen(gwt_path(sock, sizeof sock, "l.sock"), cfg, &node, NULL), GWIPC_OK);
    gwipc_config_free(cfg);
    provider_reset();
    provider_offer(node);
    gwt_child c;
    gwt_peer_consumer(&c, sock, "refused");
    GWT_UNTIL(node, refusals >= 1, 10 * SEC);
    GWT_CHECK(gwt_try_expect(&c, node, "avail 1", NULL, 0, 500000) != 0, "a refused peer bound the service");
    assert_int_equal(PR.up, 0);
    char *json = gwt_status_json(node);
    GWT_CHECK(!gwt_contains(json, "\"peers_rejected\":0,"), "no rejection counted: %s", json);
    free(json);
    gwt_wait_exit(&c, node, 10 * SEC);
    gwt_node_close(node);
}

/* ---- Logging ---------------------------------------------------------------------- */

/* Peers that crash or talk nonsense make a node log; "The library never
 * exits the process and never writes to stderr unless told to
 * (gwipc_config_set_log_fd)". */
static void provoke_logs(gwipc_node *node, const char *sock)
{
    gwt_child c;
    gwt_peer_consumer(&c, sock, "crasher");
    gwt_expect(&c, node, "avail 1", NULL, 0, 10 * SEC);
    gwt_send(&c, "crash");
    gwt_wait_exit(&c, node, 10 * SEC);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); /* the control socket is a SEQPACKET one */
    struct sockaddr_un a = {AF_UNIX, {0}};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    GWT_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s: %s", sock, strerror(errno));
    static const char junk[] = "this is not the gwipc handshake\n\x00\xff\xff\xff\xff";
    GWT_CHECK(write(fd, junk, sizeof junk) > 0, "write");
    if (node)
        gwt_dispatch(node, 200000);
    else
        gwt_sleep_us(200000);
    close(fd);
    if (node)
        gwt_dispatch(node, 200000);
}

static void test_no_stderr_unless_told(void)
{
    char sock[256], errpath[256];
    gwt_child prov;
    char *argv[] = {"gwt_peer", "provider", gwt_path(sock, sizeof sock, "p.sock"), "-", "quiet", NULL};
    gwt_spawn_stderr(&prov, gwt_path(errpath, sizeof errpath, "stderr"), "c-tests/gwt_peer", argv);
    gwt_expect(&prov, NULL, "ready", NULL, 0, 10 * SEC);
    provoke_logs(NULL, sock);
    gwt_send(&prov, "quit");
    assert_int_equal(gwt_wait_exit(&prov, NULL, 10 * SEC), 0);
    struct stat st;
    GWT_CHECK(stat(errpath, &st) == 0, "no stderr file");
    GWT_CHECK(st.st_size == 0, "the provider's library wrote %lld bytes to stderr unasked (GWT_KEEP_TMP=1 keeps %s)",
              (long long)st.st_size, errpath);
}

static void test_log_fd_gets_records(void)
{
    char sock[256];
    int p[2];
    gwipc_node *node = NULL;
    GWT_CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
    gwipc_config *cfg = NULL;
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_log_fd(cfg, p[1], GWIPC_LOG_DEBUG), GWIPC_OK);
    close(p[1]); /* "duplicated" */
    GWT_RC(gwipc_node_listen(gwt_path(sock, sizeof sock, "l.sock"), cfg, &node, NULL), GWIPC_OK);
    gwipc_config_free(cfg);
    provider_reset();
    provider_offer(node);
    provoke_logs(node, sock);
    gwipc_node_close(node);
    char buf[8192];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    GWT_CHECK(n > 0 && memchr(buf, '\n', (size_t)n), "no log line at the log fd (read %zd)", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_events_in_order_with_sequence_numbers),
        GWT_TEST(test_kept_samples_hold_slots_until_released),
        GWT_TEST(test_kept_inline_samples_are_copies),
        GWT_TEST(test_field_initial_value_and_request_update),
        GWT_TEST(test_field_update_request_reaches_provider),
        GWT_TEST(test_availability_follows_withdraw_and_reoffer),
        GWT_TEST(test_methods_blocking),
        GWT_TEST(test_methods_async_reply_cancel_timeout),
        GWT_TEST(test_pending_call_completes_when_provider_dies),
        GWT_TEST(test_fd_readiness_alone_drives_timers_and_bursts),
        GWT_TEST(test_rings_off_or_small_with_spin),
        GWT_TEST(test_a_released_keep_cannot_be_kept_again),
        GWT_TEST(test_fan_out_to_two_consumers),
        GWT_TEST(test_calls_answered_from_a_worker_thread),
        GWT_TEST(test_find_appear_and_disappear),
        GWT_TEST(test_peer_callbacks_and_userdata),
        GWT_TEST(test_status_json),
        GWT_TEST(test_status_endpoint_builtins_and_commands),
        GWT_TEST(test_application_command_in_this_process),
        GWT_TEST(test_node_wait_reports_work_without_doing_it),
        GWT_TEST(test_rules_refuse_subscriptions_and_calls),
        GWT_TEST(test_authorizer_refuses_peers),
        GWT_TEST(test_no_stderr_unless_told),
        GWT_TEST(test_log_fd_gets_records),
    };
    return GWT_RUN(tests);
}
