/*
 * sigprobe - looks at signal dispositions before and after libgwipc (and its
 * Go runtime) is loaded. Not linked against the library: it dlopen()s
 * libgwipc.so.1 (found through LD_LIBRARY_PATH or its RUNPATH).
 *
 *   sigprobe actions DIR   prints "same SIGxx" or "changed SIGxx ..." per
 *                          signal, after loading and using the library
 *                          (a listener with a status endpoint, a dialler,
 *                          dispatch, a Simple-IPC query); a host SA_ONSTACK
 *                          handler for SIGUSR2 installed before the load
 *                          must still be there ("kept SIGUSR2").
 *   sigprobe signalfd DIR  blocks SIGTERM, then loads and uses the library,
 *                          sends itself SIGTERM and reads it from a signalfd:
 *                          "signalfd got 15" (the header's rule for hosts that
 *                          block signals before the library is loaded).
 * DIR is a directory for its sockets. Exit 0 unless something failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <gwipc.h>

static int (*p_config_new)(gwipc_config **);
static int (*p_set_status)(gwipc_config *, const char *, uint32_t);
static void (*p_config_free)(gwipc_config *);
static int (*p_listen)(const char *, const gwipc_config *, gwipc_node **, gwipc_error *);
static int (*p_dial)(const char *, const gwipc_config *, gwipc_node **, gwipc_error *);
static int (*p_dispatch)(gwipc_node *, int64_t);
static void (*p_close)(gwipc_node *);
static int (*p_query)(const char *, const void *, size_t, int64_t, char **, size_t *, gwipc_error *);
static void (*p_free)(void *);

static void load(void *h, const char *name, void *fnp, size_t size)
{
    void *sym = dlsym(h, name);
    if (!sym) {
        fprintf(stderr, "sigprobe: dlsym %s: %s\n", name, dlerror());
        exit(1);
    }
    memcpy(fnp, &sym, size); /* object pointer to function pointer, without a pedantic cast */
}
#define LOAD(h, name, fp) load(h, name, &(fp), sizeof(fp))

/* Loads the library and makes it start its threads, goroutines and servers. */
static void load_and_use(const char *dir)
{
    void *h = dlopen("libgwipc.so.1", RTLD_NOW);
    if (!h) {
        fprintf(stderr, "sigprobe: dlopen: %s\n", dlerror());
        exit(1);
    }
    LOAD(h, "gwipc_config_new", p_config_new);
    LOAD(h, "gwipc_config_set_status_path", p_set_status);
    LOAD(h, "gwipc_config_free", p_config_free);
    LOAD(h, "gwipc_node_listen", p_listen);
    LOAD(h, "gwipc_node_dial", p_dial);
    LOAD(h, "gwipc_node_dispatch", p_dispatch);
    LOAD(h, "gwipc_node_close", p_close);
    LOAD(h, "gwipc_sipc_query", p_query);
    LOAD(h, "gwipc_free", p_free);
    char sock[512], status[512];
    snprintf(sock, sizeof sock, "%s/probe-%d.sock", dir, (int)getpid());
    snprintf(status, sizeof status, "%s/probe-%d.status", dir, (int)getpid());
    gwipc_config *cfg = NULL;
    gwipc_node *l = NULL, *d = NULL;
    if (p_config_new(&cfg) != GWIPC_OK || p_set_status(cfg, status, 0) != GWIPC_OK ||
        p_listen(sock, cfg, &l, NULL) != GWIPC_OK || p_dial(sock, NULL, &d, NULL) != GWIPC_OK) {
        fprintf(stderr, "sigprobe: could not set up nodes\n");
        exit(1);
    }
    p_config_free(cfg);
    for (int i = 0; i < 20; i++) {
        p_dispatch(l, 5000);
        p_dispatch(d, 5000);
    }
    char *resp = NULL;
    size_t len;
    if (p_query(status, "ping", 4, 5000000, &resp, &len, NULL) != GWIPC_OK) {
        fprintf(stderr, "sigprobe: status query failed\n");
        exit(1);
    }
    p_free(resp);
    p_close(d);
    p_close(l);
}

static void host_handler(int sig) { (void)sig; }

static int actions(const char *dir)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGUSR1, SIGHUP, SIGQUIT, SIGALRM, SIGCHLD, SIGWINCH, SIGTSTP,
                               SIGCONT, SIGTTIN, SIGTTOU, SIGXCPU, SIGVTALRM};
    enum { N = sizeof sigs / sizeof sigs[0] };
    struct sigaction before[N], after, mine, usr2;
    memset(&mine, 0, sizeof mine);
    mine.sa_handler = host_handler;
    mine.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGUSR2, &mine, NULL);
    for (int i = 0; i < N; i++)
        sigaction(sigs[i], NULL, &before[i]);
    load_and_use(dir);
    int changed = 0;
    for (int i = 0; i < N; i++) {
        sigaction(sigs[i], NULL, &after);
        int same = after.sa_handler == before[i].sa_handler &&
                   (after.sa_flags & SA_SIGINFO) == (before[i].sa_flags & SA_SIGINFO);
        printf("%s SIG%s\n", same ? "same" : "changed", sigabbrev_np(sigs[i]));
        changed += !same;
    }
    sigaction(SIGUSR2, NULL, &usr2);
    printf("%s SIGUSR2\n", usr2.sa_handler == host_handler ? "kept" : "lost");
    return changed || usr2.sa_handler != host_handler;
}

static int use_signalfd(const char *dir)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL); /* before the library (and its threads) exist */
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    load_and_use(dir);
    kill(getpid(), SIGTERM); /* process-directed: any thread could take it */
    struct pollfd p = {fd, POLLIN, 0};
    struct signalfd_siginfo si;
    if (poll(&p, 1, 5000) != 1 || read(fd, &si, sizeof si) != sizeof si) {
        printf("signalfd got nothing\n");
        return 1;
    }
    printf("signalfd got %u\n", si.ssi_signo);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "actions") == 0)
        return actions(argv[2]);
    if (argc == 3 && strcmp(argv[1], "signalfd") == 0)
        return use_signalfd(argv[2]);
    fprintf(stderr, "usage: sigprobe actions|signalfd DIR\n");
    return 2;
}
