/*
 * test_go - C nodes against Go nodes: the repo's Go tool (build/gwipc) plays
 * the other side. `gwipc demo --role provider|consumer` is the demo's
 * provider and consumer (demo.sensor/living-room@1.0: one field event, one
 * "describe" method, a reading every 200 ms); `gwipc status`, `gwipc query`
 * and `gwipc serve-sipc` speak the Simple-IPC protocol.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define SEC 1000000LL

static void require_go_tool(void)
{
    GWT_CHECK(gwt_have_build_file("gwipc"), "%s/gwipc is missing: the Go tool plays the Go peer (make build)",
              gwt_build_dir());
}

static const gwipc_service_id demo_sensor = {"demo.sensor", 1, 0, "living-room"};

static struct go_rec {
    int describe_done;
    char describe[128];
} G;

static void on_describe(void *u, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)u, (void)p, (void)id;
    G.describe_done = e ? e->code : 1;
    if (r)
        snprintf(G.describe, sizeof G.describe, "%.*s", (int)r->len, (const char *)r->data);
}

/* The Go demo provider; this process is the consumer. */
static void test_c_consumer_of_a_go_provider(void)
{
    char sock[256], status[256];
    require_go_tool();
    memset(&G, 0, sizeof G);
    gwt_child go;
    gwt_spawn(&go, "gwipc", "demo", "--role", "provider", "--socket", gwt_path(sock, sizeof sock, "go.sock"),
              "--status-socket", gwt_path(status, sizeof status, "go.status"), "--duration", "1s", (char *)NULL);
    gwt_expect(&go, NULL, "offering", NULL, 0, 10 * SEC);
    gwipc_node *node = gwt_dial(sock, "c-consumer");
    static gwt_rec rec;
    gwt_rec_init(&rec);
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    gwipc_proxy *p = NULL;
    pp.on_availability = gwt_on_avail, pp.on_subscription = gwt_on_suback, pp.userdata = &rec;
    GWT_RC(gwipc_node_require(node, &demo_sensor, &pp, &p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(p, 0, GWIPC_INITIAL_VALUE, gwt_on_sample, &rec, NULL), GWIPC_OK);
    GWT_UNTIL(node, gwt_rec_available(&rec) == 1, 10 * SEC);
    GWT_RC(gwipc_proxy_call_async(p, 0, NULL, 0, 5 * SEC, on_describe, NULL, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(node, G.describe_done, 5 * SEC);
    assert_int_equal(G.describe_done, 1);
    GWT_CHECK(gwt_contains(G.describe, "thermometer"), "describe: \"%s\"", G.describe);

    /* Its status endpoint, from C. */
    char *resp = NULL;
    size_t len;
    GWT_RC(gwipc_sipc_query(status, "ping", 4, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    assert_string_equal(resp, "pong");
    gwipc_free(resp);
    GWT_RC(gwipc_sipc_query(status, "status", 6, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    GWT_CHECK(gwt_contains(resp, "\"name\":\"demo-provider\"") && gwt_contains(resp, "\"name\":\"c-consumer\""),
              "the Go provider's status: %s", resp);
    gwipc_free(resp);

    GWT_UNTIL(node, gwt_rec_available(&rec) == 0, 15 * SEC); /* it withdraws after its readings */
    GWT_CHECK(rec.n == 5, "received %d readings from the Go provider, want 5", rec.n);
    for (int i = 0; i < rec.n; i++) {
        GWT_CHECK(strncmp(rec.s[i].data, "temperature=", 12) == 0, "reading %d: \"%s\"", i, rec.s[i].data);
        if (i)
            assert_int_equal(rec.s[i].seq, rec.s[i - 1].seq + 1);
    }
    assert_int_equal(gwt_wait_exit(&go, node, 10 * SEC), 0);
    gwt_node_close(node);
}

/* This process provides demo.sensor; the Go demo consumer checks it got
 * every reading with no gap and calls "describe". */
static int go_subscribed;
static void on_go_sub(void *u, gwipc_offer *o, uint16_t ev, int on)
{
    (void)u, (void)o, (void)ev;
    go_subscribed = on;
}
static void on_go_call(void *u, gwipc_offer *o, const gwipc_call *c)
{
    static const char d[] = "C thermometer, made in C";
    (void)u, (void)o;
    gwipc_call_reply(c, d, sizeof d - 1);
}

static void test_go_consumer_of_a_c_provider(void)
{
    char sock[256];
    require_go_tool();
    gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "c.sock"), "c-provider", NULL);
    static const uint16_t fields[] = {0};
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    gwipc_offer *o = NULL;
    op.events = 1, op.fields = fields, op.n_fields = 1, op.methods = 1;
    op.on_call = on_go_call, op.on_subscription = on_go_sub;
    GWT_RC(gwipc_node_offer(node, &demo_sensor, &op, &o, NULL), GWIPC_OK);
    go_subscribed = 0;
    gwt_child go;
    gwt_spawn(&go, "gwipc", "demo", "--role", "consumer", "--socket", sock, "--duration", "1s", (char *)NULL);
    GWT_UNTIL(node, go_subscribed, 10 * SEC);
    for (int i = 0; i < 5; i++) { /* the Go consumer wants duration / 200 ms = 5 */
        char r[64];
        int n = snprintf(r, sizeof r, "temperature=%d.5C", 20 + i);
        GWT_RC(gwipc_offer_publish(o, 0, r, (size_t)n, 0), GWIPC_OK);
        gwt_dispatch(node, 50000);
    }
    gwt_dispatch(node, 200000);
    gwipc_offer_close(o); /* the consumer stops when the service is withdrawn */
    int code;
    char *out = gwt_read_all(&go, node, 15 * SEC, &code);
    GWT_CHECK(code == 0, "the Go consumer exited %d:\n%s", code, out);
    GWT_CHECK(gwt_contains(out, "describe: C thermometer"), "no describe reply in:\n%s", out);
    GWT_CHECK(gwt_contains(out, "done: 5 readings received, 0 missed"), "the Go consumer said:\n%s", out);
    free(out);
    gwt_node_close(node);
}

/* The Go tool's status and query commands against a C node's endpoint. */
static int on_hello(void *u, const void *req, size_t len, gwipc_writer *w)
{
    char out[128];
    (void)u;
    int n = snprintf(out, sizeof out, "hello from C, you said: %.*s", (int)len, (const char *)req);
    return gwipc_writer_write(w, out, (size_t)n) == GWIPC_OK ? 0 : 1;
}

static void test_go_tools_query_a_c_status_endpoint(void)
{
    char sock[256], status[256];
    require_go_tool();
    gwipc_node *node = gwt_listen(gwt_path(sock, sizeof sock, "c.sock"), "c-go-node",
                                  gwt_path(status, sizeof status, "c.status"));
    GWT_RC(gwipc_node_handle_command(node, "hello", on_hello, NULL, NULL), GWIPC_OK);
    gwt_child go;
    int code;
    gwt_spawn(&go, "gwipc", "status", "--socket", status, "--json", (char *)NULL);
    char *out = gwt_read_all(&go, node, 15 * SEC, &code);
    GWT_CHECK(code == 0 && gwt_contains(out, "\"name\":\"c-go-node\""), "gwipc status --json (exit %d): %s", code, out);
    free(out);
    gwt_spawn(&go, "gwipc", "status", "--socket", status, (char *)NULL);
    out = gwt_read_all(&go, node, 15 * SEC, &code);
    GWT_CHECK(code == 0 && gwt_contains(out, "node \"c-go-node\": listener"), "gwipc status (exit %d): %s", code, out);
    free(out);
    gwt_spawn(&go, "gwipc", "query", "--socket", status, "hello there", (char *)NULL);
    out = gwt_read_all(&go, node, 15 * SEC, &code);
    GWT_CHECK(code == 0 && gwt_contains(out, "hello from C, you said: hello there"), "gwipc query (exit %d): %s", code,
              out);
    free(out);
    gwt_node_close(node);
}

/* gwipc_sipc_query against the Go Simple-IPC test server. */
static void test_sipc_query_of_a_go_server(void)
{
    char path[256];
    require_go_tool();
    gwt_child go;
    gwt_spawn(&go, "gwipc", "serve-sipc", "--socket", gwt_path(path, sizeof path, "serve.sock"), (char *)NULL);
    char *resp = NULL;
    size_t len = 0;
    int64_t dl = gwt_now_us() + 10 * SEC;
    int rc;
    while ((rc = gwipc_sipc_query(path, "ping", 4, SEC, &resp, &len, NULL)) == GWIPC_E_SIPC_CONNECT &&
           gwt_now_us() < dl)
        gwt_sleep_us(20000); /* until it listens */
    GWT_RC(rc, GWIPC_OK);
    assert_string_equal(resp, "pong");
    gwipc_free(resp);

    GWT_RC(gwipc_sipc_query(path, "big", 3, 10 * SEC, &resp, &len, NULL), GWIPC_OK);
    assert_int_equal(len, 10000 * (5 + 75 + 1)); /* "big: %075d\n" */
    assert_int_equal(resp[len], '\0');
    assert_memory_equal(resp + len - 81, "big: ", 5);
    gwipc_free(resp);
    GWT_RC(gwipc_sipc_query(path, "chunk", 5, 10 * SEC, &resp, &len, NULL), GWIPC_OK);
    assert_int_equal(len, 10000 * 81);
    gwipc_free(resp);

    gwipc_error err = GWIPC_ERROR_INIT;
    int64_t t0 = gwt_now_us();
    rc = gwipc_sipc_query(path, "slow", 4, 200000, &resp, &len, &err); /* 10 s of output */
    int64_t took = gwt_now_us() - t0;
    GWT_RC(rc, GWIPC_E_TIMEOUT);
    GWT_CHECK(took < 2 * SEC, "a 200 ms query timeout took %lld ms", (long long)(took / 1000));
    assert_int_equal(err.code, GWIPC_E_TIMEOUT);

    GWT_RC(gwipc_sipc_query(path, "quit", 4, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    gwipc_free(resp);
    assert_int_equal(gwt_wait_exit(&go, NULL, 10 * SEC), 0);
    GWT_RC(gwipc_sipc_query(path, "ping", 4, SEC, &resp, &len, NULL), GWIPC_E_SIPC_CONNECT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_c_consumer_of_a_go_provider),
        GWT_TEST(test_go_consumer_of_a_c_provider),
        GWT_TEST(test_go_tools_query_a_c_status_endpoint),
        GWT_TEST(test_sipc_query_of_a_go_server),
    };
    return GWT_RUN(tests);
}
