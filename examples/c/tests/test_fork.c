/*
 * test_fork - the fork guard: "No fork() without exec() once the library is
 * loaded: the child has one thread and a broken runtime. Every call in a
 * forked child returns GWIPC_E_FORKED."
 *
 * The forked children here call only gwipc functions and async-signal-safe
 * ones, report through a pipe and _exit(). Each runs under alarm() and the
 * parent's own deadline: a child that hangs (the classic Go-after-fork
 * failure) is killed and fails the test with a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define SEC 1000000LL

/* What the child calls; each returns a code. */
enum { C_NODE_FD, C_DISPATCH, C_CONFIG_NEW, C_LISTEN, C_SIPC, C_PUBLISH, C_VALIDATE, C_CLOSE, C_N };
static const char *call_names[C_N] = {"gwipc_node_fd", "gwipc_node_dispatch", "gwipc_config_new",
                                      "gwipc_node_listen", "gwipc_sipc_query", "gwipc_offer_publish",
                                      "gwipc_service_validate", "gwipc_node_close (returns)"};

static gwipc_node *node;
static gwipc_offer *offer;
static char sock2[256], status[256];

/* In the forked child: one call at a time, each result written at once (so
 * a hang shows which call hung). */
static void child_calls(int fd)
{
    alarm(5);
    for (int i = 0; i < C_N; i++) {
        int rc = 0;
        gwipc_config *cfg = NULL;
        gwipc_node *n = NULL;
        char *resp = NULL;
        size_t len;
        gwipc_service_id svc = gwt_service("one");
        switch (i) {
        case C_NODE_FD: rc = gwipc_node_fd(node); break;
        case C_DISPATCH: rc = gwipc_node_dispatch(node, 0); break;
        case C_CONFIG_NEW: rc = gwipc_config_new(&cfg); break;
        case C_LISTEN: rc = gwipc_node_listen(sock2, NULL, &n, NULL); break;
        case C_SIPC: rc = gwipc_sipc_query(status, "ping", 4, SEC, &resp, &len, NULL); break;
        case C_PUBLISH: rc = gwipc_offer_publish(offer, 0, "x", 1, 0); break;
        case C_VALIDATE: rc = gwipc_service_validate(&svc); break;
        case C_CLOSE: gwipc_node_close(node), rc = GWIPC_E_FORKED; break;
        }
        int msg[2] = {i, rc};
        if (write(fd, msg, sizeof msg) != sizeof msg)
            _exit(2);
    }
    _exit(0);
}

static int fork_pipe[2];

/* Forks; in the child makes the calls. Returns the child's pid. */
static pid_t do_fork(void)
{
    fflush(NULL); /* nothing buffered twice */
    pid_t pid = fork();
    if (pid == 0) {
        close(fork_pipe[0]);
        child_calls(fork_pipe[1]);
    }
    return pid;
}

static void *fork_on_thread(void *arg)
{
    *(pid_t *)arg = do_fork();
    return NULL;
}

/* Forks (from a new thread that never called the library, if on_thread);
 * returns the child's results; fails on a hang or a crash. */
static void run_forked(int results[C_N], int on_thread)
{
    int *p = fork_pipe;
    GWT_CHECK(pipe(p) == 0, "pipe");
    pid_t pid = -1;
    if (on_thread) {
        pthread_t t;
        pthread_create(&t, NULL, fork_on_thread, &pid);
        pthread_join(t, NULL);
    } else {
        pid = do_fork();
    }
    GWT_CHECK(pid >= 0, "fork: %s", strerror(errno));
    close(p[1]);
    for (int i = 0; i < C_N; i++)
        results[i] = 1; /* not reported */
    int64_t dl = gwt_now_us() + 6 * SEC;
    int last = -1, status_ = 0, done = 0;
    while (!done) {
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, 50) > 0) {
            int msg[2];
            ssize_t n = read(p[0], msg, sizeof msg);
            if (n == sizeof msg && msg[0] >= 0 && msg[0] < C_N)
                results[msg[0]] = msg[1], last = msg[0];
            else if (n == 0)
                done = 1;
        }
        if (gwt_now_us() > dl) {
            kill(pid, SIGKILL);
            break;
        }
    }
    close(p[0]);
    waitpid(pid, &status_, 0);
    GWT_CHECK(WIFEXITED(status_) && WEXITSTATUS(status_) == 0,
              "the forked child %s after %s (a call in a forked child must return, not hang or crash)",
              WIFSIGNALED(status_) ? (WTERMSIG(status_) == SIGALRM || WTERMSIG(status_) == SIGKILL ? "hung" : "crashed")
                                   : "failed",
              last < 0 ? "no call at all" : call_names[last]);
}

static void calls_in_a_forked_child_return_forked(int on_thread)
{
    char sock[256];
    node = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "fork-parent", gwt_path(status, sizeof status, "st"));
    gwt_path(sock2, sizeof sock2, "child.sock");
    gwipc_service_id svc = gwt_service("one");
    gwipc_offer_params op = GWIPC_OFFER_PARAMS_INIT;
    op.events = 1;
    GWT_RC(gwipc_node_offer(node, &svc, &op, &offer, NULL), GWIPC_OK);
    gwt_dispatch(node, 10000);

    int results[C_N];
    run_forked(results, on_thread);
    int bad = 0;
    for (int i = 0; i < C_N; i++)
        if (results[i] != GWIPC_E_FORKED) {
            print_error("%s in the forked child returned %d (%s), want GWIPC_E_FORKED\n", call_names[i], results[i],
                        gwipc_error_name(results[i]));
            bad++;
        }
    GWT_CHECK(bad == 0, "%d calls in a forked child did not return GWIPC_E_FORKED", bad);

    /* The parent is unaffected. */
    GWT_RC(gwipc_offer_publish(offer, 0, "x", 1, 0), GWIPC_OK);
    char *resp = NULL;
    size_t len;
    GWT_RC(gwipc_sipc_query(status, "ping", 4, 5 * SEC, &resp, &len, NULL), GWIPC_OK);
    gwipc_free(resp);
    gwt_node_close(node);
}

static void test_calls_in_a_forked_child_return_forked(void) { calls_in_a_forked_child_return_forked(0); }

/* The same, forked from a thread that had never called into the library
 * (its child's only thread is that one): a worker thread spawning a helper
 * the wrong way. */
static void test_fork_from_a_thread_that_never_called_the_library(void)
{
    calls_in_a_forked_child_return_forked(1);
}

/* A process that only loaded the library (never called it) forks: the Go
 * runtime started at load, so its child is broken just the same. Runs this
 * binary with --fresh-fork, which forks first thing in main(). */
static void test_fork_before_any_call(void)
{
    char self[4096], line[128];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    GWT_CHECK(n > 0, "readlink");
    self[n] = '\0';
    gwt_child c;
    gwt_spawn(&c, self, "--fresh-fork", (char *)NULL);
    gwt_expect(&c, NULL, "forked-child ", line, sizeof line, 10 * SEC);
    int code = gwt_wait_exit(&c, NULL, 10 * SEC);
    GWT_CHECK(strcmp(line, "forked-child -7") == 0, "%s (want -7, GWIPC_E_FORKED)", line);
    assert_int_equal(code, 0);
}

static int fresh_fork(void)
{
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(5);
        gwipc_config *cfg = NULL;
        int rc = gwipc_config_new(&cfg);
        if (write(p[1], &rc, sizeof rc) != sizeof rc)
            _exit(2);
        _exit(0);
    }
    int rc = 1, status_ = 0;
    struct pollfd pf = {p[0], POLLIN, 0};
    if (poll(&pf, 1, 6000) > 0 && read(p[0], &rc, sizeof rc) == sizeof rc)
        printf("forked-child %d\n", rc);
    else
        printf("forked-child hung\n");
    fflush(stdout);
    kill(pid, SIGKILL);
    waitpid(pid, &status_, 0);
    return 0;
}

/* fork() directly followed by exec() is fine. */
static void test_fork_then_exec_works(void)
{
    char peer[4096], sock[256], st[256];
    gwipc_node *n = gwt_listen(gwt_path(sock, sizeof sock, "l.sock"), "exec-parent", gwt_path(st, sizeof st, "st"));
    gwt_build_path(peer, sizeof peer, "c-tests/gwt_peer");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl(peer, peer, "query", st, "ping", (char *)NULL);
        _exit(127);
    }
    int status_ = 0;
    int64_t dl = gwt_now_us() + 10 * SEC;
    while (waitpid(pid, &status_, WNOHANG) == 0) {
        if (gwt_now_us() > dl) {
            kill(pid, SIGKILL);
            waitpid(pid, &status_, 0);
            GWT_FAIL("the exec'd child hung");
        }
        gwt_dispatch(n, 5000);
    }
    GWT_CHECK(WIFEXITED(status_) && WEXITSTATUS(status_) == 0, "the exec'd gwt_peer query failed (status %d)",
              status_);
    gwt_node_close(n);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--fresh-fork") == 0)
        return fresh_fork();
    const struct CMUnitTest tests[] = {
        GWT_TEST(test_calls_in_a_forked_child_return_forked),
        GWT_TEST(test_fork_from_a_thread_that_never_called_the_library),
        GWT_TEST(test_fork_before_any_call),
        GWT_TEST(test_fork_then_exec_works),
    };
    return GWT_RUN(tests);
}
