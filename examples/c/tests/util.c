/* util.c - see util.h. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef GWT_BUILD_DIR_DEFAULT
#define GWT_BUILD_DIR_DEFAULT "build"
#endif

extern char **environ;

/* ---- Failing ---------------------------------------------------------------- */

void gwt_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("%s:%d: %s\n", file, line, msg);
    _fail(file, line);
    abort(); /* _fail does not return */
}

void gwt_assert_rc(int rc, int want, const char *expr, const char *file, int line)
{
    if (rc != want)
        gwt_fail(file, line, "%s returned %d (%s), want %d (%s)", expr, rc, gwipc_error_name(rc), want,
                 gwipc_error_name(want));
}

/* ---- Time, paths ------------------------------------------------------------ */

int64_t gwt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void gwt_sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

pid_t gwt_gettid(void) { return gettid(); }

static char tmp_dir[64];
static unsigned path_seq;

char *gwt_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%u-%s", tmp_dir, ++path_seq, name);
    return buf;
}

const char *gwt_build_dir(void)
{
    const char *d = getenv("GWT_BUILD_DIR");
    return d && *d ? d : GWT_BUILD_DIR_DEFAULT;
}

char *gwt_build_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", gwt_build_dir(), rel);
    return buf;
}

int gwt_have_build_file(const char *rel)
{
    char p[4096];
    return access(gwt_build_path(p, sizeof p, rel), X_OK) == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* ---- Registries: what a failed test left behind ---------------------------- */

#define MAX_TRACKED 32
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t children[MAX_TRACKED];
static gwipc_node *nodes[MAX_TRACKED];

static void track(void **slots, void *v)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!slots[i]) {
            slots[i] = v;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static void untrack(void **slots, void *v)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (slots[i] == v)
            slots[i] = NULL;
    pthread_mutex_unlock(&reg_mu);
}

static void track_pid(pid_t pid)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!children[i]) {
            children[i] = pid;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static void untrack_pid(pid_t pid)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (children[i] == pid)
            children[i] = 0;
    pthread_mutex_unlock(&reg_mu);
}

static void kill_children(void)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
}

static void cleanup_leftovers(void)
{
    kill_children();
    for (int i = 0; i < MAX_TRACKED; i++)
        if (nodes[i]) {
            gwipc_node_close(nodes[i]);
            nodes[i] = NULL;
        }
}

/* ---- Watchdog --------------------------------------------------------------- */

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t wd_deadline; /* 0: disarmed */
static const char *wd_test = "";

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        gwt_sleep_us(100000);
        pthread_mutex_lock(&wd_mu);
        int64_t dl = wd_deadline;
        const char *name = wd_test;
        pthread_mutex_unlock(&wd_mu);
        if (dl && gwt_now_us() > dl) {
            fprintf(stderr, "\n[  HANG    ] %s: still running after its time limit; killing the run\n", name);
            for (int i = 0; i < MAX_TRACKED; i++)
                if (children[i] > 0)
                    kill(children[i], SIGKILL);
            _exit(124);
        }
    }
    return NULL;
}

/* ---- Running tests -------------------------------------------------------- */

static const int fault_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGSYS};
static struct sigaction fault_actions[5];

void gwt_trampoline(void **state)
{
    const struct gwt_case *tc = *state;
    cleanup_leftovers();
    /* Undo cmocka's signal(): put back what the Go runtime installed. */
    for (size_t i = 0; i < sizeof fault_signals / sizeof fault_signals[0]; i++)
        sigaction(fault_signals[i], &fault_actions[i], NULL);
    const char *t = getenv("GWT_TEST_TIMEOUT_S");
    int64_t limit = (t && atoi(t) > 0 ? atoi(t) : 60) * (int64_t)1000000;
    pthread_mutex_lock(&wd_mu);
    wd_test = tc->name;
    wd_deadline = gwt_now_us() + limit;
    pthread_mutex_unlock(&wd_mu);
    tc->fn();
    pthread_mutex_lock(&wd_mu);
    wd_deadline = 0;
    pthread_mutex_unlock(&wd_mu);
    cleanup_leftovers();
}

static void at_exit(void)
{
    kill_children();
    if (tmp_dir[0] && !getenv("GWT_KEEP_TMP"))
        nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int gwt_run(const char *group, const struct CMUnitTest *tests, size_t n)
{
    for (size_t i = 0; i < sizeof fault_signals / sizeof fault_signals[0]; i++)
        sigaction(fault_signals[i], NULL, &fault_actions[i]);
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/gwt-XXXXXX", base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(at_exit);
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_detach(wd);
    const char *slash = strrchr(group, '/');
    return _cmocka_run_group_tests(slash ? slash + 1 : group, tests, n, NULL, NULL);
}

/* ---- gwipc helpers ---------------------------------------------------------- */

gwipc_service_id gwt_service(const char *instance)
{
    gwipc_service_id s = {"gwt.test", 1, 2, instance};
    return s;
}

int gwt_dispatch(gwipc_node *node, int64_t wait_us)
{
    int total = 0;
    int rc = gwipc_node_dispatch(node, wait_us);
    for (;;) {
        if (rc < 0)
            GWT_FAIL("gwipc_node_dispatch: %d (%s)", rc, gwipc_error_name(rc));
        total += rc & ~GWIPC_DISPATCH_MORE;
        if (!(rc & GWIPC_DISPATCH_MORE))
            return total;
        rc = gwipc_node_dispatch(node, 0);
    }
}

static gwipc_node *open_node(int listen, const char *path, gwipc_config *cfg)
{
    gwipc_node *node = NULL;
    gwipc_error err = GWIPC_ERROR_INIT;
    int rc = listen ? gwipc_node_listen(path, cfg, &node, &err) : gwipc_node_dial(path, cfg, &node, &err);
    GWT_CHECK(rc == GWIPC_OK && node, "%s %s: %s: %s", listen ? "listen" : "dial", path, gwipc_error_name(rc),
              err.message);
    track((void **)nodes, node);
    return node;
}

static gwipc_node *make_node(int listen, const char *path, const char *name, const char *status_path)
{
    gwipc_config *cfg = NULL;
    GWT_RC(gwipc_config_new(&cfg), GWIPC_OK);
    GWT_RC(gwipc_config_set_name(cfg, name), GWIPC_OK);
    if (status_path)
        GWT_RC(gwipc_config_set_status_path(cfg, status_path, 0), GWIPC_OK);
    gwipc_node *node = open_node(listen, path, cfg);
    gwipc_config_free(cfg);
    return node;
}

gwipc_node *gwt_dial_config(const char *path, gwipc_config *cfg) { return open_node(0, path, cfg); }

gwipc_node *gwt_listen(const char *path, const char *name, const char *status_path)
{
    return make_node(1, path, name, status_path);
}

gwipc_node *gwt_dial(const char *path, const char *name) { return make_node(0, path, name, NULL); }

void gwt_node_forget(gwipc_node *node) { untrack((void **)nodes, node); }

void gwt_node_close(gwipc_node *node)
{
    untrack((void **)nodes, node);
    gwipc_node_close(node);
}

char *gwt_status_json(gwipc_node *node)
{
    char *json = NULL;
    size_t len = 0;
    GWT_RC(gwipc_node_status_json(node, &json, &len), GWIPC_OK);
    GWT_CHECK(json != NULL, "status JSON is NULL");
    GWT_CHECK(strlen(json) == len, "status JSON: len %zu but strlen %zu", len, strlen(json));
    char *copy = strdup(json);
    gwipc_free(json);
    return copy;
}

/* ---- The recorder ------------------------------------------------------------ */

void gwt_rec_init(gwt_rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->available = -1;
    for (int i = 0; i < 8; i++)
        r->suback[i] = -1;
}

#define REC_GET(r, expr)                                                                 \
    do {                                                                                 \
        pthread_mutex_lock(&(r)->mu);                                                    \
        int v_ = (expr);                                                                 \
        pthread_mutex_unlock(&(r)->mu);                                                  \
        return v_;                                                                       \
    } while (0)

int gwt_rec_n(gwt_rec *r) { REC_GET(r, r->n); }
int gwt_rec_available(gwt_rec *r) { REC_GET(r, r->available); }
int gwt_rec_suback(gwt_rec *r, int event) { REC_GET(r, event >= 0 && event < 8 ? r->suback[event] : -1); }

void gwt_rec_wait(gwt_rec *r, gwipc_node *node, int n, int64_t timeout_us)
{
    if (node)
        GWT_UNTIL(node, gwt_rec_n(r) >= n, timeout_us);
    else
        GWT_WAIT(gwt_rec_n(r) >= n, timeout_us);
}

void gwt_on_sample(void *ud, gwipc_proxy *p, const gwipc_sample *s)
{
    gwt_rec *r = ud;
    (void)p;
    pthread_mutex_lock(&r->mu);
    r->tid = gettid();
    if (r->n < GWT_REC_MAX) {
        gwt_srec *x = &r->s[r->n++];
        x->event = s->event;
        x->requested = s->requested;
        x->kept = s->kept;
        x->seq = s->seq;
        x->len = s->len;
        x->tid = r->tid;
        size_t n = s->len < sizeof x->data - 1 ? s->len : sizeof x->data - 1;
        if (n)
            memcpy(x->data, s->data, n);
        x->data[n] = '\0';
    }
    pthread_mutex_unlock(&r->mu);
}

void gwt_on_avail(void *ud, gwipc_proxy *p, int available)
{
    gwt_rec *r = ud;
    (void)p;
    pthread_mutex_lock(&r->mu);
    r->tid = gettid();
    r->available = available;
    r->avail_events++;
    pthread_mutex_unlock(&r->mu);
}

void gwt_on_suback(void *ud, gwipc_proxy *p, uint16_t event, int status)
{
    gwt_rec *r = ud;
    (void)p;
    pthread_mutex_lock(&r->mu);
    r->tid = gettid();
    if (event < 8)
        r->suback[event] = status;
    pthread_mutex_unlock(&r->mu);
}

void gwt_on_destroy(void *ud)
{
    gwt_rec *r = ud;
    pthread_mutex_lock(&r->mu);
    r->destroyed++;
    pthread_mutex_unlock(&r->mu);
}

gwipc_proxy *gwt_require(gwipc_node *node, const char *instance, gwt_rec *r, int event, int mode)
{
    gwipc_service_id svc = gwt_service(instance);
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    gwipc_proxy *p = NULL;
    gwipc_error err = GWIPC_ERROR_INIT;
    pp.on_availability = gwt_on_avail;
    pp.on_subscription = gwt_on_suback;
    pp.userdata = r;
    pp.destroy = gwt_on_destroy;
    int rc = gwipc_node_require(node, &svc, &pp, &p, &err);
    GWT_CHECK(rc == GWIPC_OK && p, "require gwt.test/%s: %s: %s", instance, gwipc_error_name(rc), err.message);
    if (event >= 0)
        GWT_RC(gwipc_proxy_subscribe(p, (uint16_t)event, mode, gwt_on_sample, r, gwt_on_destroy), GWIPC_OK);
    return p;
}

int gwt_contains(const char *text, const char *needle) { return text && strstr(text, needle) != NULL; }

/* ---- Processes -------------------------------------------------------------- */

void gwt_spawnv(gwt_child *c, const char *prog, char *const argv[]) { gwt_spawn_stderr(c, NULL, prog, argv); }

void gwt_spawn_stderr(gwt_child *c, const char *stderr_path, const char *prog, char *const argv[])
{
    char path[4096];
    int in[2], out[2];
    memset(c, 0, sizeof *c);
    if (prog[0] != '/')
        prog = gwt_build_path(path, sizeof path, prog);
    /* Socket pairs, not pipes: we write with MSG_NOSIGNAL, so a dead child
     * is an error code, not a SIGPIPE. */
    GWT_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) == 0 &&
                  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == 0,
              "socketpair: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[1], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (stderr_path)
        posix_spawn_file_actions_addopen(&fa, 2, stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    /* posix_spawn is fork+exec with nothing in between that could touch the
     * Go runtime (glibc uses clone(CLONE_VM | CLONE_VFORK)). */
    int err = posix_spawn(&c->pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[1]);
    close(out[1]);
    GWT_CHECK(err == 0, "posix_spawn %s: %s", prog, strerror(err));
    track_pid(c->pid);
    c->in = in[0];
    c->out = out[0];
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    const char *slash = strrchr(prog, '/');
    snprintf(c->name, sizeof c->name, "%.40s[%d]", slash ? slash + 1 : prog, (int)c->pid);
}

void gwt_spawn(gwt_child *c, const char *prog, ...)
{
    char *argv[32];
    int n = 0;
    va_list ap;
    va_start(ap, prog);
    argv[n++] = (char *)prog;
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    gwt_spawnv(c, prog, argv);
}

void gwt_send(gwt_child *c, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    GWT_CHECK(n >= 0 && n < (int)sizeof line - 1, "gwt_send: line too long");
    line[n++] = '\n';
    GWT_CHECK(send(c->in, line, (size_t)n, MSG_NOSIGNAL) == n, "sending \"%.*s\" to %s: %s", n - 1, line, c->name,
              strerror(errno));
}

/* Reads what is available; returns the bytes read (0 at EOF, -1 for none now). */
static ssize_t fill(gwt_child *c)
{
    if (c->len == sizeof c->buf) /* a line longer than the buffer: drop it */
        c->len = 0;
    ssize_t n = read(c->out, c->buf + c->len, sizeof c->buf - c->len);
    if (n > 0)
        c->len += (size_t)n;
    else if (n == 0)
        c->eof = 1;
    return n;
}

/* Takes the next complete line out of the buffer into line; 1 if there was one. */
static int next_line(gwt_child *c, char *line, size_t cap)
{
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl)
        return 0;
    size_t n = (size_t)(nl - c->buf);
    size_t m = n < cap - 1 ? n : cap - 1;
    memcpy(line, c->buf, m);
    line[m] = '\0';
    memmove(c->buf, nl + 1, c->len - n - 1);
    c->len -= n + 1;
    return 1;
}

static void remember(gwt_child *c, const char *line)
{
    snprintf(c->last[c->nlast++ % 4], sizeof c->last[0], "%.255s", line);
}

static void wait_io(gwt_child *c, gwipc_node *node, int64_t wait_us)
{
    struct pollfd p[2] = {{c->out, POLLIN, 0}, {-1, POLLIN, 0}};
    if (node) {
        p[1].fd = gwipc_node_fd(node);
        GWT_CHECK(p[1].fd >= 0, "gwipc_node_fd: %d", p[1].fd);
    }
    int ms = (int)(wait_us / 1000) + 1;
    int r = poll(p, node ? 2 : 1, ms < 10 ? ms : 10); /* EINTR: just go round again */
    if (node && r > 0 && p[1].revents)
        gwt_dispatch(node, 0);
    if (!c->eof && r > 0 && p[0].revents)
        fill(c);
}

int gwt_try_expect(gwt_child *c, gwipc_node *node, const char *prefix, char *line, size_t cap,
                   int64_t timeout_us)
{
    char tmp[4096];
    int64_t dl = gwt_now_us() + timeout_us;
    for (;;) {
        while (next_line(c, tmp, sizeof tmp)) {
            if (strncmp(tmp, prefix, strlen(prefix)) == 0) {
                if (line)
                    snprintf(line, cap, "%s", tmp);
                return 0;
            }
            remember(c, tmp);
        }
        if (c->eof)
            return -2;
        int64_t left = dl - gwt_now_us();
        if (left <= 0)
            return -1;
        wait_io(c, node, left);
    }
}

void gwt_expect(gwt_child *c, gwipc_node *node, const char *prefix, char *line, size_t cap, int64_t timeout_us)
{
    int r = gwt_try_expect(c, node, prefix, line, cap, timeout_us);
    if (r != 0) {
        unsigned k = c->nlast < 4 ? c->nlast : 4;
        GWT_FAIL("%s: no line \"%s...\" (%s after %lld ms); its last lines: [%s] [%s] [%s] [%s]", c->name, prefix,
                 r == -1 ? "timed out" : "its output ended", (long long)(timeout_us / 1000),
                 k > 0 ? c->last[(c->nlast - k) % 4] : "", k > 1 ? c->last[(c->nlast - k + 1) % 4] : "",
                 k > 2 ? c->last[(c->nlast - k + 2) % 4] : "", k > 3 ? c->last[(c->nlast - k + 3) % 4] : "");
    }
}

void gwt_kill(gwt_child *c, int sig)
{
    if (c->pid > 0)
        kill(c->pid, sig);
}

/* Moves the complete lines buffered into *all (if all) and the history. */
static void collect(gwt_child *c, char **all, size_t *all_len)
{
    char tmp[4096];
    while (next_line(c, tmp, sizeof tmp)) {
        if (all) {
            size_t n = strlen(tmp);
            *all = realloc(*all, *all_len + n + 2);
            memcpy(*all + *all_len, tmp, n);
            (*all)[*all_len + n] = '\n';
            *all_len += n + 1;
            (*all)[*all_len] = '\0';
        }
        remember(c, tmp);
    }
}

static int reap(gwt_child *c, gwipc_node *node, int64_t timeout_us, char **all, size_t *all_len)
{
    int64_t dl = gwt_now_us() + timeout_us;
    int status;
    if (c->in >= 0)
        shutdown(c->in, SHUT_WR); /* EOF on its stdin */
    for (;;) {
        collect(c, all, all_len);
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid)
            break;
        if (gwt_now_us() > dl) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            untrack_pid(c->pid);
            c->pid = -1;
            GWT_FAIL("%s did not exit within %lld ms (killed)", c->name, (long long)(timeout_us / 1000));
        }
        wait_io(c, node, 5000);
    }
    /* It exited: what it wrote is all in the socket now (a grandchild could
     * hold it open, so this is bounded by EAGAIN, not by EOF). */
    while (!c->eof && fill(c) > 0)
        collect(c, all, all_len);
    collect(c, all, all_len);
    untrack_pid(c->pid);
    c->pid = -1;
    close(c->in);
    close(c->out);
    c->in = c->out = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int gwt_wait_exit(gwt_child *c, gwipc_node *node, int64_t timeout_us) { return reap(c, node, timeout_us, NULL, NULL); }

char *gwt_read_all(gwt_child *c, gwipc_node *node, int64_t timeout_us, int *exit_code)
{
    char *all = calloc(1, 1);
    size_t len = 0;
    int code = reap(c, node, timeout_us, &all, &len);
    if (c->len) { /* a last line without a newline */
        all = realloc(all, len + c->len + 1);
        memcpy(all + len, c->buf, c->len);
        all[len + c->len] = '\0';
    }
    if (exit_code)
        *exit_code = code;
    return all;
}

void gwt_peer_provider(gwt_child *c, const char *sock, const char *status, const char *name)
{
    gwt_peer_provider_opt(c, sock, status, name, NULL);
}

void gwt_peer_provider_opt(gwt_child *c, const char *sock, const char *status, const char *name, const char *opt)
{
    gwt_spawn(c, "c-tests/gwt_peer", "provider", sock, status ? status : "-", name, opt, (char *)NULL);
    gwt_expect(c, NULL, "ready", NULL, 0, 10000000);
}

void gwt_peer_consumer(gwt_child *c, const char *sock, const char *name)
{
    gwt_spawn(c, "c-tests/gwt_peer", "consumer", sock, name, (char *)NULL);
    gwt_expect(c, NULL, "ready", NULL, 0, 10000000);
}

/* ---- Signals ---------------------------------------------------------------- */

int gwt_same_sigaction(const struct sigaction *a, const struct sigaction *b)
{
    return a->sa_handler == b->sa_handler && (a->sa_flags & SA_SIGINFO) == (b->sa_flags & SA_SIGINFO);
}
