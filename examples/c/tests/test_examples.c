/*
 * test_examples - the example programs do what their comments say, as
 * separate processes: sensor_daemon with consumer and status_query,
 * method_server with method_client, and this process calling the daemon's
 * method and watching its field.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sensor.h"
#include "util.h"

#define SEC 1000000LL

static void start_daemon(gwt_child *d, char *sock, size_t scap, char *status, size_t stcap, const char *count,
                         const char *interval)
{
    gwt_spawn(d, "examples/sensor_daemon", "-s", gwt_path(sock, scap, "sensor.sock"), "-S",
              gwt_path(status, stcap, "sensor.status"), "-n", count, "-i", interval, (char *)NULL);
    gwt_expect(d, NULL, "offering example.sensor/kitchen@1.0", NULL, 0, 10 * SEC);
}

static char *run(const char *prog, int *code, ...)
{
    char *argv[16];
    int n = 0;
    va_list ap;
    va_start(ap, code);
    argv[n++] = (char *)prog;
    while (n < 15 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    gwt_child c;
    gwt_spawnv(&c, prog, argv);
    return gwt_read_all(&c, NULL, 30 * SEC, code);
}

static void test_sensor_daemon_consumer_status_query(void)
{
    char sock[256], status[256], line[256];
    int code;
    gwt_child d;
    start_daemon(&d, sock, sizeof sock, status, sizeof status, "0", "50");

    char *out = run("examples/consumer", &code, "-s", sock, "-n", "5", "-t", "20", (char *)NULL);
    GWT_CHECK(code == 0, "consumer exited %d:\n%s", code, out);
    GWT_CHECK(gwt_contains(out, "example.sensor/kitchen is available"), "consumer:\n%s", out);
    GWT_CHECK(gwt_contains(out, "setpoint: 20.0"), "no initial setpoint (GWIPC_INITIAL_VALUE):\n%s", out);
    GWT_CHECK(gwt_contains(out, "done: 5 readings"), "consumer:\n%s", out);
    GWT_CHECK(!gwt_contains(out, "missed"), "the consumer missed readings:\n%s", out);
    free(out);

    out = run("examples/status_query", &code, "-s", status, "readings", (char *)NULL);
    GWT_CHECK(code == 0 && gwt_contains(out, "readings published"), "status_query readings (exit %d): %s", code, out);
    free(out);
    out = run("examples/status_query", &code, "-s", status, (char *)NULL);
    GWT_CHECK(code == 0 && gwt_contains(out, "\"name\":\"sensor_daemon\"") && gwt_contains(out, "example.sensor/kitchen@1.0"),
              "status_query status (exit %d): %s", code, out);
    free(out);
    out = run("examples/status_query", &code, "-s", status, "ping", (char *)NULL);
    GWT_CHECK(code == 0 && gwt_contains(out, "pong"), "status_query ping (exit %d): %s", code, out);
    free(out);
    char nothing[256];
    out = run("examples/status_query", &code, "-s", gwt_path(nothing, sizeof nothing, "none"), (char *)NULL);
    assert_int_equal(code, 1);
    free(out);

    gwt_kill(&d, SIGTERM);
    gwt_expect(&d, NULL, "signal 15: stopping", NULL, 0, 5 * SEC);
    gwt_expect(&d, NULL, "done: ", line, sizeof line, 5 * SEC);
    assert_int_equal(gwt_wait_exit(&d, NULL, 10 * SEC), 0);
    GWT_CHECK(access(sock, F_OK) != 0, "the daemon left its socket behind (\"removes its socket on close\")");
}

static void test_sensor_daemon_stops_after_its_readings_and_on_sigint(void)
{
    char sock[256], status[256];
    gwt_child d;
    start_daemon(&d, sock, sizeof sock, status, sizeof status, "3", "20");
    gwt_expect(&d, NULL, "done: 3 readings published", NULL, 0, 10 * SEC);
    assert_int_equal(gwt_wait_exit(&d, NULL, 10 * SEC), 0);
    start_daemon(&d, sock, sizeof sock, status, sizeof status, "0", "20");
    gwt_expect(&d, NULL, "published reading #2", NULL, 0, 10 * SEC);
    gwt_kill(&d, SIGINT);
    gwt_expect(&d, NULL, "signal 2: stopping", NULL, 0, 5 * SEC);
    assert_int_equal(gwt_wait_exit(&d, NULL, 10 * SEC), 0);
}

/* The daemon's method changes its field; an invalid value is an
 * application error with a payload. */
static int replies, reply_code, reply_app;
static char reply_text[128];
static void on_set(void *u, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)u, (void)p, (void)id;
    replies++;
    reply_code = e ? e->code : 0;
    reply_app = e ? e->app_code : 0;
    snprintf(reply_text, sizeof reply_text, "%.*s", r ? (int)r->len : 0, r ? (const char *)r->data : "");
}

static void test_sensor_daemon_method_and_field(void)
{
    char sock[256], status[256];
    gwt_child d;
    start_daemon(&d, sock, sizeof sock, status, sizeof status, "0", "200");
    gwipc_node *node = gwt_dial(sock, "example-test");
    static gwt_rec rec;
    gwt_rec_init(&rec);
    gwipc_service_id svc = SENSOR_SERVICE;
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    gwipc_proxy *p = NULL;
    pp.on_availability = gwt_on_avail, pp.userdata = &rec;
    GWT_RC(gwipc_node_require(node, &svc, &pp, &p, NULL), GWIPC_OK);
    GWT_RC(gwipc_proxy_subscribe(p, SENSOR_EV_SETPOINT, GWIPC_INITIAL_VALUE, gwt_on_sample, &rec, NULL), GWIPC_OK);
    gwt_rec_wait(&rec, node, 1, 10 * SEC);
    assert_string_equal(rec.s[0].data, "20.0");

    replies = 0;
    GWT_RC(gwipc_proxy_call_async(p, SENSOR_M_SET_SETPOINT, "22.5", 4, 5 * SEC, on_set, NULL, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(node, replies == 1, 5 * SEC);
    assert_int_equal(reply_code, 0);
    assert_string_equal(reply_text, "old=20.0");
    gwt_rec_wait(&rec, node, 2, 5 * SEC);
    assert_string_equal(rec.s[1].data, "22.5");

    GWT_RC(gwipc_proxy_call_async(p, SENSOR_M_SET_SETPOINT, "hot", 3, 5 * SEC, on_set, NULL, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(node, replies == 2, 5 * SEC);
    assert_int_equal(reply_code, GWIPC_E_APP);
    assert_int_equal(reply_app, 1);
    GWT_CHECK(gwt_contains(reply_text, "setpoint must be a number"), "error payload \"%s\"", reply_text);

    gwt_kill(&d, SIGTERM);
    GWT_UNTIL(node, gwt_rec_available(&rec) == 0, 5 * SEC); /* withdrawn at shutdown */
    assert_int_equal(gwt_wait_exit(&d, node, 10 * SEC), 0);
    gwt_node_close(node);
}

static void test_method_server_and_client(void)
{
    char sock[256];
    int code;
    gwt_child s;
    gwt_spawn(&s, "examples/method_server", "-s", gwt_path(sock, sizeof sock, "calc.sock"), "-d", "100", (char *)NULL);
    gwt_expect(&s, NULL, "serving example.calc/main@1.0", NULL, 0, 10 * SEC);
    char *out = run("examples/method_client", &code, "-s", sock, "-q", "20", "hello", (char *)NULL);
    GWT_CHECK(code == 0, "method_client exited %d:\n%s", code, out);
    const char *want[] = {"upper(\"hello\") = \"HELLO\"", "failed with application error 22: \"empty request\"",
                          "GWIPC_E_TIMEOUT", ": \"ASYNC\"", "done: 0 unexpected outcomes"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        GWT_CHECK(gwt_contains(out, want[i]), "method_client output lacks %s:\n%s", want[i], out);
    free(out);
    gwt_expect(&s, NULL, "log from peer", NULL, 0, 5 * SEC);
    gwt_kill(&s, SIGTERM);
    char line[256];
    gwt_expect(&s, NULL, "done: ", line, sizeof line, 5 * SEC);
    GWT_CHECK(atoi(line + 6) >= 3, "the server answered too few calls: %s", line);
    assert_int_equal(gwt_wait_exit(&s, NULL, 10 * SEC), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_sensor_daemon_consumer_status_query),
        GWT_TEST(test_sensor_daemon_stops_after_its_readings_and_on_sigint),
        GWT_TEST(test_sensor_daemon_method_and_field),
        GWT_TEST(test_method_server_and_client),
    };
    return GWT_RUN(tests);
}
