/*
 * method_server - answers method calls later, from a worker thread.
 *
 *   method_server [-s SOCKET] [-d DELAY_MS] [-n CALLS]
 *
 * Offers "example.calc" (calc.h). CALC_M_UPPER is not answered in its
 * callback: the callback copies the gwipc_call struct into a queue and a
 * worker thread replies DELAY_MS later (gwipc_call_reply / gwipc_call_fail
 * may be called from any thread; the copy stays valid until answered).
 * The node runs on a thread of the library (gwipc_node_run_thread), so this
 * program needs no event loop. Exits 0 after CALLS answered calls (default:
 * run until SIGTERM/SIGINT).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gwipc.h>

#include "calc.h"

#define QUEUE_CAP 64

struct server {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gwipc_call queue[QUEUE_CAP]; /* copies of pending calls */
    size_t head, len;
    int quit;
    long answered, want;
    long delay_ms;
};

/* Signals and "done" both write to this pipe; main() waits on it. See
 * sensor_daemon.c for why a handler (with SA_ONSTACK) and not signalfd. */
static int wake_pipe[2] = {-1, -1};

static void wake(void)
{
    int saved = errno;
    if (write(wake_pipe[1], "x", 1) < 0) {
        /* full: main is being woken already */
    }
    errno = saved;
}

static void on_signal(int sig)
{
    (void)sig;
    wake();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Answers one call: uppercase of the request, or an application error. */
static void answer(const gwipc_call *call)
{
    int rc;
    if (call->len == 0) {
        static const char msg[] = "empty request";
        rc = gwipc_call_fail(call, CALC_E_EMPTY, msg, sizeof msg - 1);
    } else {
        char *up = malloc(call->len);
        if (!up) {
            rc = gwipc_call_fail(call, 12, NULL, 0);
        } else {
            const unsigned char *in = call->data; /* valid until answered */
            for (size_t i = 0; i < call->len; i++)
                up[i] = (char)toupper(in[i]);
            rc = gwipc_call_reply(call, up, call->len);
            free(up);
        }
    }
    if (rc == GWIPC_E_CANCELLED)
        printf("call from peer %llu: the caller stopped waiting\n", (unsigned long long)call->peer);
    else if (rc != GWIPC_OK)
        fprintf(stderr, "method_server: reply: %s\n", gwipc_strerror(rc));
}

static void *worker(void *arg)
{
    struct server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && s->len == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->len == 0)
            break; /* quit, and nothing left */
        gwipc_call call = s->queue[s->head];
        s->head = (s->head + 1) % QUEUE_CAP;
        s->len--;
        int quitting = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (!quitting)
            sleep_ms(s->delay_ms); /* "work" */
        if (gwipc_call_is_cancelled(&call) == 1)
            printf("call from peer %llu was cancelled; answering it anyway frees it\n",
                   (unsigned long long)call.peer);
        answer(&call);
        pthread_mutex_lock(&s->mu);
        if (++s->answered == s->want)
            wake();
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Runs on the library's run thread (gwipc_node_run_thread). */
static void on_call(void *userdata, gwipc_offer *offer, const gwipc_call *call)
{
    struct server *s = userdata;
    (void)offer;
    if (call->method == CALC_M_LOG) {
        /* Fire-and-forget: valid only during this callback, no answer. */
        printf("log from peer %llu: %.*s\n", (unsigned long long)call->peer, (int)call->len,
               (const char *)call->data);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->len == QUEUE_CAP) {
        pthread_mutex_unlock(&s->mu);
        gwipc_call_fail(call, 16, "busy", 4);
        return;
    }
    s->queue[(s->head + s->len) % QUEUE_CAP] = *call; /* the copy is what we answer later */
    s->len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_cancel(void *userdata, gwipc_offer *offer, const gwipc_call *call)
{
    (void)userdata, (void)offer;
    printf("peer %llu cancelled a call (timed out or gave up)\n", (unsigned long long)call->peer);
}

int main(int argc, char **argv)
{
    const char *socket_path = "gwipc-calc.sock";
    static struct server s; /* static: zeroed, and too big for a small stack */
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.delay_ms = 100;
    int opt;
    while ((opt = getopt(argc, argv, "s:d:n:h")) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 'd': s.delay_ms = strtol(optarg, NULL, 10); break;
        case 'n': s.want = strtol(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: method_server [-s SOCKET] [-d DELAY_MS] [-n CALLS]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGINT, &sa, NULL) != 0)
        return 1;

    gwipc_error err = GWIPC_ERROR_INIT;
    gwipc_node *node = NULL;
    gwipc_offer *offer = NULL;
    int rc = gwipc_node_listen(socket_path, NULL, &node, &err); /* NULL config: defaults */
    if (rc != GWIPC_OK) {
        fprintf(stderr, "method_server: listen %s: %s\n", socket_path, err.message);
        return 1;
    }
    gwipc_service_id svc = CALC_SERVICE;
    gwipc_offer_params params = GWIPC_OFFER_PARAMS_INIT;
    params.methods = CALC_METHODS;
    params.on_call = on_call;
    params.on_cancel = on_cancel;
    params.userdata = &s;
    rc = gwipc_node_offer(node, &svc, &params, &offer, &err);
    if (rc != GWIPC_OK) {
        fprintf(stderr, "method_server: offer: %s\n", err.message);
        return 1;
    }
    pthread_t tid;
    pthread_create(&tid, NULL, worker, &s);
    rc = gwipc_node_run_thread(node); /* callbacks now run on the library's thread */
    if (rc != GWIPC_OK) {
        fprintf(stderr, "method_server: run thread: %s\n", gwipc_strerror(rc));
        return 1;
    }
    printf("serving example.calc/main@1.0 on %s\n", socket_path);

    struct pollfd p = {wake_pipe[0], POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }

    gwipc_node_stop(node); /* no more callbacks: nothing new enters the queue */
    pthread_mutex_lock(&s.mu);
    s.quit = 1; /* the worker answers what is queued without delay, then ends */
    pthread_cond_signal(&s.cv);
    pthread_mutex_unlock(&s.mu);
    pthread_join(tid, NULL);
    printf("done: %ld calls answered\n", s.answered);
    gwipc_node_shutdown(node, 1000000); /* flush the last replies and goodbyes */
    return 0;
}
