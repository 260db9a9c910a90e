/*
 * test_signals - "gwipc installs no signal handler of its own"; "A host that
 * installs signal handlers must set SA_ONSTACK on them. A host that blocks
 * signals to read them with signalfd() or sigwait() must block them before
 * the library is loaded."
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "util.h"

#define SEC 1000000LL

/* sigprobe loads the library with dlopen, so it sees the process before. */
static void test_loading_installs_no_handlers(void)
{
    gwt_child c;
    char dir[256], *slash;
    gwt_path(dir, sizeof dir, "x");
    slash = strrchr(dir, '/');
    *slash = '\0';
    gwt_spawn(&c, "c-tests/sigprobe", "actions", dir, (char *)NULL);
    int code;
    char *out = gwt_read_all(&c, NULL, 20 * SEC, &code);
    print_message("%s", out);
    GWT_CHECK(!gwt_contains(out, "changed"), "the library changed signal dispositions:\n%s", out);
    GWT_CHECK(gwt_contains(out, "same SIGINT") && gwt_contains(out, "same SIGTERM") && gwt_contains(out, "same SIGUSR1"),
              "sigprobe did not report: %s", out);
    GWT_CHECK(gwt_contains(out, "kept SIGUSR2"), "a host handler installed before the load was replaced:\n%s", out);
    assert_int_equal(code, 0);
    free(out);
}

static void test_signalfd_with_signals_blocked_before_load(void)
{
    gwt_child c;
    char dir[256];
    gwt_path(dir, sizeof dir, "x");
    *strrchr(dir, '/') = '\0';
    gwt_spawn(&c, "c-tests/sigprobe", "signalfd", dir, (char *)NULL);
    int code;
    char *out = gwt_read_all(&c, NULL, 20 * SEC, &code);
    GWT_CHECK(gwt_contains(out, "signalfd got 15"), "sigprobe signalfd: exit %d, output: %s", code, out);
    assert_int_equal(code, 0);
    free(out);
}

/* In this process (linked: loaded before main): using the library changes
 * no disposition either. */
static const int watched[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT, SIGALRM, SIGCHLD};
#define N_WATCHED (sizeof watched / sizeof watched[0])

static void test_using_the_library_installs_no_handlers(void)
{
    struct sigaction before[N_WATCHED], after;
    for (size_t i = 0; i < N_WATCHED; i++)
        sigaction(watched[i], NULL, &before[i]);
    char sock[256], status[256];
    gwt_child prov;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), gwt_path(status, sizeof status, "st"), "sig");
    gwipc_node *node = gwt_dial(sock, "sig-consumer");
    gwt_rec rec;
    gwt_rec_init(&rec);
    gwt_require(node, "one", &rec, GWT_EV_PLAIN, GWIPC_UPDATES);
    GWT_UNTIL(node, gwt_rec_suback(&rec, GWT_EV_PLAIN) == 0, 10 * SEC);
    gwt_send(&prov, "pub 10");
    gwt_rec_wait(&rec, node, 10, 5 * SEC);
    char *resp = NULL;
    size_t len;
    GWT_RC(gwipc_sipc_query(status, "status", 6, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    gwipc_free(resp);
    GWT_RC(gwipc_node_run_thread(node), GWIPC_OK);
    gwipc_node_stop(node);
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, node, 10 * SEC);
    gwt_node_close(node);
    for (size_t i = 0; i < N_WATCHED; i++) {
        sigaction(watched[i], NULL, &after);
        GWT_CHECK(gwt_same_sigaction(&before[i], &after), "the disposition of SIG%s changed",
                  sigabbrev_np(watched[i]));
    }
}

/* A host with SA_ONSTACK handlers for SIGUSR1 and SIGALRM, both raised
 * thousands of times a second (the signals land on any thread, Go's
 * included), survives seconds of event traffic and blocking calls, and
 * dispatch never fails with EINTR. */
static volatile sig_atomic_t usr1, alrm;
static volatile int storm_stop;
static int echoes_done, echoes_ok;
static int storm_samples, storm_gaps;
static uint64_t storm_last;
static void on_storm_sample(void *u, gwipc_proxy *p, const gwipc_sample *s)
{
    (void)u, (void)p;
    if (storm_samples++ && s->seq != storm_last + 1)
        storm_gaps++;
    storm_last = s->seq;
}
static void on_usr1(int s) { (void)s, usr1++; }
static void on_echo(void *u, gwipc_proxy *p, gwipc_call_id id, const gwipc_reply *r, const gwipc_error *e)
{
    (void)u, (void)p, (void)id, (void)r;
    echoes_done++;
    echoes_ok += e == NULL;
}
static void on_alrm(int s) { (void)s, alrm++; }
static void *raiser(void *arg)
{
    (void)arg;
    while (!storm_stop) {
        kill(getpid(), SIGUSR1); /* process-directed */
        gwt_sleep_us(300);
    }
    return NULL;
}

static void test_sa_onstack_handlers_survive_event_traffic(void)
{
    struct sigaction sa, old_usr1, old_alrm;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, &old_usr1);
    sa.sa_handler = on_alrm;
    sigaction(SIGALRM, &sa, &old_alrm);
    usr1 = alrm = 0, storm_stop = 0, echoes_done = echoes_ok = 0, storm_samples = storm_gaps = 0;

    char sock[256];
    gwt_child prov;
    gwt_peer_provider(&prov, gwt_path(sock, sizeof sock, "p.sock"), NULL, "storm");
    gwipc_node *node = gwt_dial(sock, "storm-consumer");
    static gwt_rec rec;
    gwt_rec_init(&rec);
    gwipc_proxy *p = gwt_require(node, "one", &rec, -1, 0);
    GWT_RC(gwipc_proxy_subscribe(p, GWT_EV_PLAIN, GWIPC_UPDATES, on_storm_sample, NULL, NULL), GWIPC_OK);
    GWT_UNTIL(node, gwt_rec_suback(&rec, GWT_EV_PLAIN) == 0, 10 * SEC);

    struct itimerval it = {{0, 500}, {0, 500}}; /* SIGALRM every 0.5 ms */
    setitimer(ITIMER_REAL, &it, NULL);
    pthread_t t;
    pthread_create(&t, NULL, raiser, NULL);
    int64_t end = gwt_now_us() + 3 * SEC;
    int rounds = 0, calls = 0;
    while (gwt_now_us() < end) {
        /* Rounds of 16, below a subscriber's share of the 64-slot pool (32):
         * a burst larger than the share is dropped for a subscriber that has
         * not released its slots yet, by design. */
        gwt_send(&prov, "pub 16");
        gwt_expect(&prov, node, "published 16 0", NULL, 0, 10 * SEC);
        int64_t dl = gwt_now_us() + 10 * SEC;
        while (storm_samples < (rounds + 1) * 16) {
            GWT_CHECK(gwt_now_us() < dl, "round %d: %d of %d samples after 10 s under signals", rounds,
                      storm_samples, (rounds + 1) * 16);
            gwt_dispatch(node, 5000);
        }
        rounds++;
        GWT_RC(gwipc_proxy_call_async(p, GWT_M_ECHO, "x", 1, 5 * SEC, on_echo, NULL, NULL, NULL), GWIPC_OK);
        calls++;
    }
    GWT_UNTIL(node, echoes_done == calls, 10 * SEC);
    storm_stop = 1;
    pthread_join(t, NULL);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    print_message("%d samples in %d rounds, %d calls, with %d SIGUSR1 and %d SIGALRM handled\n", storm_samples,
                  rounds, calls, (int)usr1, (int)alrm);
    assert_int_equal(storm_gaps, 0);
    GWT_CHECK(usr1 > 500 && alrm > 500, "too few signals to mean anything (%d, %d)", (int)usr1, (int)alrm);
    gwt_send(&prov, "quit");
    gwt_wait_exit(&prov, node, 10 * SEC);
    gwt_node_close(node);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGALRM, &old_alrm, NULL);
    GWT_CHECK(echoes_ok == calls, "%d of %d calls failed under signals", calls - echoes_ok, calls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_loading_installs_no_handlers),
        GWT_TEST(test_signalfd_with_signals_blocked_before_load),
        GWT_TEST(test_using_the_library_installs_no_handlers),
        GWT_TEST(test_sa_onstack_handlers_survive_event_traffic),
    };
    return GWT_RUN(tests);
}
