/*
 * gwt_peer - the C peer process the tests start (never a test itself).
 *
 *   gwt_peer provider SOCKET STATUS_PATH|- NAME [noinline]
 *   gwt_peer consumer SOCKET NAME
 *   gwt_peer query STATUS_PATH REQUEST      (one gwipc_sipc_query, then exit)
 *
 * A line protocol: commands on stdin, reports on stdout (one line each).
 * Both roles print "ready" once set up; stdin EOF or "quit" exits 0 after a
 * graceful shutdown, "crash" exits 9 at once (no goodbye).
 *
 * provider: listens, offers gwt.test/one@1.2 (util.h: 2 events, event 1 a
 *   field, 4 methods; with noinline, GWIPC_OFFER_NO_INLINE) and serves the status endpoint with commands "echo"
 *   (responds with the rest of the request) and "fail" (fails).
 *   stdin:  pub N | loan N | field TEXT | withdraw | reoffer
 *   (an update request for the field with none cached publishes "fresh")
 *   stdout: sub EV 0|1 | call M FF DATA | cancel M | update-request EV |
 *           late-reply RC | published N RC | peer-up NAME | peer-down NAME CODE
 * consumer: dials, requires gwt.test/one, subscribes event 0 (updates) and
 *   event 1 (with its initial value).
 *   stdin:  call TAG M DATA [TIMEOUT_MS] | send M DATA | cancel TAG |
 *           request-update EV | unsub EV
 *   stdout: avail 0|1 | suback EV STATUS | sample EV SEQ REQUESTED LEN DATA |
 *           reply TAG RC APP_CODE LEN DATA | sent RC | cancelled RC | requested RC
 * query: prints "response RC LEN", then the response bytes and a newline; exits 0 if
 *   the query succeeded, 1 if not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gwipc.h>

/* The same definitions as util.h, without cmocka. */
enum { EV_PLAIN = 0, EV_FIELD = 1, EVENTS = 2 };
enum { M_ECHO = 0, M_FAIL = 1, M_SLOW = 2, M_FF = 3, METHODS = 4 };
#define APP_CODE 42

static gwipc_node *node;
static gwipc_offer *offer;
static gwipc_proxy *proxy;
static unsigned long counter;

/* One report line, written with one write() so threads do not interleave. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(1, line, (size_t)n) < 0)
        _exit(3);
}

/* Payload bytes as printable text (at most cap - 1). */
static const char *text(const void *data, size_t len, char *buf, size_t cap)
{
    const unsigned char *p = data;
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    buf[n] = '\0';
    return buf;
}

static void die(const char *what, int rc, const gwipc_error *err)
{
    fprintf(stderr, "gwt_peer: %s: %s %s\n", what, gwipc_error_name(rc), err ? err->message : "");
    exit(1);
}

/* ---- provider --------------------------------------------------------------- */

struct late {
    gwipc_call call;
    long ms;
};

static void *late_reply(void *arg)
{
    struct late *l = arg;
    struct timespec ts = {l->ms / 1000, (l->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    say("late-reply %d", gwipc_call_reply(&l->call, "late", 4)); /* from this thread */
    free(l);
    return NULL;
}

static void on_call(void *ud, gwipc_offer *o, const gwipc_call *call)
{
    char buf[512];
    (void)ud, (void)o;
    say("call %u %u %s", call->method, call->fire_and_forget, text(call->data, call->len, buf, sizeof buf));
    if (call->fire_and_forget)
        return;
    switch (call->method) {
    case M_ECHO:
        gwipc_call_reply(call, call->data, call->len);
        break;
    case M_FAIL: {
        char msg[600];
        int n = snprintf(msg, sizeof msg, "bad:%s", text(call->data, call->len, buf, sizeof buf));
        gwipc_call_fail(call, APP_CODE, msg, (size_t)n);
        break;
    }
    case M_SLOW: {
        struct late *l = malloc(sizeof *l);
        pthread_t t;
        l->call = *call; /* the copy stays valid until answered */
        l->ms = atol(text(call->data, call->len, buf, sizeof buf));
        pthread_create(&t, NULL, late_reply, l);
        pthread_detach(t);
        break;
    }
    default:
        gwipc_call_fail(call, 1, NULL, 0);
    }
}

static void on_cancel(void *ud, gwipc_offer *o, const gwipc_call *call)
{
    (void)ud, (void)o;
    say("cancel %u", call->method);
}

static void on_subscribers(void *ud, gwipc_offer *o, uint16_t ev, int on)
{
    (void)ud, (void)o;
    say("sub %u %d", ev, on);
}

static char field[256] = "";
static size_t field_len;
static int have_field;

static void on_update_request(void *ud, gwipc_offer *o, uint16_t ev)
{
    (void)ud;
    say("update-request %u", ev);
    if (ev == EV_FIELD && !have_field) /* none cached: make one up */
        field_len = (size_t)snprintf(field, sizeof field, "fresh"), have_field = 1;
    if (ev == EV_FIELD)
        gwipc_offer_publish(o, EV_FIELD, field, field_len, 0);
}

static int cmd_echo(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    const char *r = req;
    (void)ud;
    if (len < 5) /* "echo" alone */
        return 0;
    return gwipc_writer_write(w, r + 5, len - 5) == GWIPC_OK ? 0 : 1;
}

static int cmd_fail(void *ud, const void *req, size_t len, gwipc_writer *w)
{
    (void)ud, (void)req, (void)len;
    gwipc_writer_write(w, "partial", 7); /* must not reach the client */
    return 1;
}

static void on_peer_up(void *ud, gwipc_node *n, const gwipc_peer_info *p)
{
    (void)ud, (void)n;
    say("peer-up %s", p->name);
}

static void on_peer_down(void *ud, gwipc_node *n, const gwipc_peer_info *p, const gwipc_error *why)
{
    (void)ud, (void)n;
    say("peer-down %s %d", p->name, why ? why->code : 0);
}

static uint32_t offer_flags; /* GWIPC_OFFER_NO_INLINE with argument noinline */

static void make_offer(void)
{
    static const uint16_t fields[] = {EV_FIELD};
    gwipc_service_id svc = {"gwt.test", 1, 2, "one"};
    gwipc_offer_params p = GWIPC_OFFER_PARAMS_INIT;
    gwipc_error err = GWIPC_ERROR_INIT;
    p.events = EVENTS;
    p.methods = METHODS;
    p.fields = fields;
    p.n_fields = 1;
    p.on_call = on_call;
    p.on_cancel = on_cancel;
    p.on_subscription = on_subscribers;
    p.on_update_request = on_update_request;
    p.flags = offer_flags;
    int rc = gwipc_node_offer(node, &svc, &p, &offer, &err);
    if (rc != GWIPC_OK)
        die("offer", rc, &err);
}

/* Slots are freed by this loop's own dispatch (subscribers' releases), so a
 * publish must not wait for one here: on GWIPC_E_NOSLOT dispatch, retry. */
static int publish_one(int use_loan)
{
    int64_t tries = 500; /* x 10 ms */
    for (;;) {
        char buf[64];
        int rc, len;
        if (use_loan) {
            gwipc_loan loan = {0};
            rc = gwipc_offer_loan(offer, EV_PLAIN, 0, &loan);
            if (rc == GWIPC_OK) {
                len = snprintf(loan.data, loan.capacity, "loan %lu", counter);
                rc = gwipc_loan_publish(&loan, (size_t)len);
            }
        } else {
            len = snprintf(buf, sizeof buf, "ev %lu", counter);
            rc = gwipc_offer_publish(offer, EV_PLAIN, buf, (size_t)len, 0);
        }
        if (rc != GWIPC_E_NOSLOT || --tries == 0) {
            counter += rc == GWIPC_OK;
            return rc;
        }
        rc = gwipc_node_dispatch(node, 10000);
        while (rc >= 0 && (rc & GWIPC_DISPATCH_MORE))
            rc = gwipc_node_dispatch(node, 0);
    }
}

static void provider_command(char *line)
{
    long n;
    int rc = GWIPC_OK;
    if (sscanf(line, "pub %ld", &n) == 1 || sscanf(line, "loan %ld", &n) == 1) {
        for (long i = 0; i < n && rc == GWIPC_OK; i++)
            rc = publish_one(line[0] == 'l');
        say("published %ld %d", n, rc);
    } else if (strncmp(line, "field ", 6) == 0) {
        field_len = (size_t)snprintf(field, sizeof field, "%s", line + 6);
        have_field = 1;
        say("published 1 %d", gwipc_offer_publish(offer, EV_FIELD, field, field_len, 0));
    } else if (strcmp(line, "withdraw") == 0) {
        gwipc_offer_close(offer);
        offer = NULL;
        say("withdrawn");
    } else if (strcmp(line, "reoffer") == 0) {
        make_offer();
        say("offered");
    } else {
        say("unknown %s", line);
    }
}

static void provider(const char *sock, const char *status, const char *name)
{
    gwipc_config *cfg = NULL;
    gwipc_error err = GWIPC_ERROR_INIT;
    if (gwipc_config_new(&cfg) != GWIPC_OK || gwipc_config_set_name(cfg, name) != GWIPC_OK ||
        gwipc_config_set_peer_callbacks(cfg, on_peer_up, on_peer_down, NULL, NULL) != GWIPC_OK ||
        (strcmp(status, "-") != 0 && gwipc_config_set_status_path(cfg, status, 0) != GWIPC_OK))
        die("config", -1, NULL);
    int rc = gwipc_node_listen(sock, cfg, &node, &err);
    gwipc_config_free(cfg);
    if (rc != GWIPC_OK)
        die("listen", rc, &err);
    make_offer();
    if (strcmp(status, "-") != 0 && (gwipc_node_handle_command(node, "echo", cmd_echo, NULL, NULL) != GWIPC_OK ||
                                     gwipc_node_handle_command(node, "fail", cmd_fail, NULL, NULL) != GWIPC_OK))
        die("commands", -1, NULL);
}

/* ---- consumer --------------------------------------------------------------- */

static void on_avail(void *ud, gwipc_proxy *p, int available)
{
    (void)ud, (void)p;
    say("avail %d", available);
}

static void on_suback(void *ud, gwipc_proxy *p, uint16_t ev, int status)
{
    (void)ud, (void)p;
    say("suback %u %d", ev, status);
}

static void on_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    char buf[512];
    (void)ud, (void)p;
    say("sample %u %llu %u %zu %s", s->event, (unsigned long long)s->seq, s->requested, s->len,
        text(s->data, s->len, buf, sizeof buf));
}

#define MAX_CALLS 64
static struct {
    char tag[32];
    gwipc_call_id id;
} calls[MAX_CALLS];

static void on_reply(void *ud, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *err)
{
    char buf[512];
    const char *tag = "?";
    (void)ud, (void)p;
    for (int i = 0; i < MAX_CALLS; i++)
        if (calls[i].id == id)
            tag = calls[i].tag;
    say("reply %s %d %d %zu %s", tag, err ? err->code : 0, err ? err->app_code : 0, r ? r->len : 0,
        r ? text(r->data, r->len, buf, sizeof buf) : "");
}

static void consumer_command(char *line)
{
    char tag[32], data[512];
    unsigned m, ev;
    long ms = 0;
    if (sscanf(line, "call %31s %u %511s %ld", tag, &m, data, &ms) >= 3) {
        if (strcmp(data, "-") == 0)
            data[0] = '\0';
        gwipc_call_id id = 0;
        int rc = gwipc_proxy_call_async(proxy, (uint16_t)m, data, strlen(data), ms * 1000, on_reply, NULL, NULL, &id);
        for (int i = 0; i < MAX_CALLS; i++)
            if (!calls[i].id) {
                snprintf(calls[i].tag, sizeof calls[i].tag, "%s", tag);
                calls[i].id = id;
                break;
            }
        if (rc != GWIPC_OK)
            say("reply %s %d 0 0 ", tag, rc);
    } else if (sscanf(line, "send %u %511s", &m, data) == 2) {
        say("sent %d", gwipc_proxy_send(proxy, (uint16_t)m, data, strlen(data)));
    } else if (sscanf(line, "cancel %31s", tag) == 1) {
        gwipc_call_id id = 0;
        for (int i = 0; i < MAX_CALLS; i++)
            if (strcmp(calls[i].tag, tag) == 0)
                id = calls[i].id;
        say("cancelled %d", gwipc_proxy_cancel(proxy, id));
    } else if (sscanf(line, "request-update %u", &ev) == 1) {
        say("requested %d", gwipc_proxy_request_update(proxy, (uint16_t)ev));
    } else if (sscanf(line, "unsub %u", &ev) == 1) {
        say("unsubscribed %d", gwipc_proxy_unsubscribe(proxy, (uint16_t)ev));
    } else {
        say("unknown %s", line);
    }
}

static void consumer(const char *sock, const char *name)
{
    gwipc_config *cfg = NULL;
    gwipc_error err = GWIPC_ERROR_INIT;
    if (gwipc_config_new(&cfg) != GWIPC_OK || gwipc_config_set_name(cfg, name) != GWIPC_OK)
        die("config", -1, NULL);
    int rc = gwipc_node_dial(sock, cfg, &node, &err);
    gwipc_config_free(cfg);
    if (rc != GWIPC_OK)
        die("dial", rc, &err);
    gwipc_service_id svc = {"gwt.test", 1, 2, "one"};
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    pp.on_availability = on_avail;
    pp.on_subscription = on_suback;
    rc = gwipc_node_require(node, &svc, &pp, &proxy, &err);
    if (rc != GWIPC_OK)
        die("require", rc, &err);
    if ((rc = gwipc_proxy_subscribe(proxy, EV_PLAIN, GWIPC_UPDATES, on_sample, NULL, NULL)) != GWIPC_OK ||
        (rc = gwipc_proxy_subscribe(proxy, EV_FIELD, GWIPC_INITIAL_VALUE, on_sample, NULL, NULL)) != GWIPC_OK)
        die("subscribe", rc, NULL);
}

/* ---- the loop --------------------------------------------------------------- */

static int query(const char *path, const char *request)
{
    char *resp = NULL;
    size_t len = 0;
    gwipc_error err = GWIPC_ERROR_INIT;
    int rc = gwipc_sipc_query(path, request, strlen(request), 10000000, &resp, &len, &err);
    say("response %d %zu", rc, len);
    if (rc == GWIPC_OK && (write(1, resp, len) < 0 || write(1, "\n", 1) < 0))
        return 3;
    gwipc_free(resp);
    return rc == GWIPC_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "query") == 0)
        return query(argv[2], argv[3]);
    int is_provider = (argc == 5 || (argc == 6 && strcmp(argv[5], "noinline") == 0)) &&
                      strcmp(argv[1], "provider") == 0;
    if (is_provider) {
        offer_flags = argc == 6 ? GWIPC_OFFER_NO_INLINE : 0;
        provider(argv[2], argv[3], argv[4]);
    }
    else if (argc == 4 && strcmp(argv[1], "consumer") == 0)
        consumer(argv[2], argv[3]);
    else {
        fprintf(stderr, "usage: gwt_peer provider SOCKET STATUS|- NAME [noinline] | consumer SOCKET NAME\n");
        return 2;
    }
    say("ready");
    char buf[8192];
    size_t len = 0;
    for (;;) {
        struct pollfd p[2] = {{0, POLLIN, 0}, {gwipc_node_fd(node), POLLIN, 0}};
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            return 1;
        int rc = gwipc_node_dispatch(node, 0);
        while (rc >= 0 && (rc & GWIPC_DISPATCH_MORE))
            rc = gwipc_node_dispatch(node, 0);
        if (rc < 0)
            die("dispatch", rc, NULL);
        if (!p[0].revents)
            continue;
        ssize_t n = read(0, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break; /* EOF: quit */
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            *nl = '\0';
            if (strcmp(buf, "quit") == 0)
                goto quit;
            if (strcmp(buf, "crash") == 0)
                _exit(9);
            if (is_provider)
                provider_command(buf);
            else
                consumer_command(buf);
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len);
        }
    }
quit:
    gwipc_node_shutdown(node, 1000000);
    say("bye");
    return 0;
}
