/*
 * method_client - calls method_server: blocking calls with a timeout, an
 * asynchronous call with a completion callback, and a fire-and-forget call.
 *
 *   method_client [-s SOCKET] [-t TIMEOUT_MS] [-q QUICK_TIMEOUT_MS] [TEXT]
 *
 * A blocking gwipc_proxy_call needs someone else to dispatch the node (the
 * reply arrives through dispatch), so the node runs on a library thread
 * (gwipc_node_run_thread) and the calls are made from main(). The completion
 * of the asynchronous call runs on that run thread. With -q the client also
 * makes one call with a timeout shorter than the server's delay, to show
 * GWIPC_E_TIMEOUT. Exits 0 if every call behaved as expected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gwipc.h>

#include "calc.h"

struct completion {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok;
};

/* Runs exactly once per asynchronous call, inside a dispatch (here: on the
 * run thread). reply is borrowed for the callback. */
static void on_reply(void *userdata, gwipc_proxy *proxy, gwipc_call_id id, const gwipc_reply *reply,
                     const gwipc_error *err)
{
    struct completion *c = userdata;
    (void)proxy;
    if (err)
        printf("async call %llu failed: %s (%s)\n", (unsigned long long)id, gwipc_error_name(err->code),
               err->message);
    else
        printf("async call %llu: \"%.*s\"\n", (unsigned long long)id, reply ? (int)reply->len : 0,
               reply ? (const char *)reply->data : "");
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    c->ok = err == NULL;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* A blocking call; prints the outcome and returns the code. */
static int call_upper(gwipc_proxy *proxy, const char *text, int64_t timeout_ms)
{
    gwipc_reply reply = {0};
    gwipc_error err = GWIPC_ERROR_INIT;
    int rc = gwipc_proxy_call(proxy, CALC_M_UPPER, text, strlen(text), timeout_ms * 1000, &reply, &err);
    if (rc == GWIPC_OK)
        printf("upper(\"%s\") = \"%.*s\"\n", text, (int)reply.len, (const char *)reply.data);
    else if (rc == GWIPC_E_APP) /* an application error: the reply holds its payload */
        printf("upper(\"%s\") failed with application error %d: \"%.*s\"\n", text, (int)err.app_code,
               (int)reply.len, (const char *)reply.data);
    else
        printf("upper(\"%s\"): %s (%s)\n", text, gwipc_error_name(rc), err.message);
    gwipc_reply_release(&reply); /* owned on OK and APP; zeroed (a no-op) otherwise */
    return rc;
}

int main(int argc, char **argv)
{
    const char *socket_path = "gwipc-calc.sock", *text = "hello";
    long timeout_ms = 2000, quick_ms = 0;
    int opt;
    while ((opt = getopt(argc, argv, "s:t:q:h")) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 't': timeout_ms = strtol(optarg, NULL, 10); break;
        case 'q': quick_ms = strtol(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: method_client [-s SOCKET] [-t TIMEOUT_MS] [-q QUICK_TIMEOUT_MS] [TEXT]\n");
            return 2;
        }
    }
    if (optind < argc)
        text = argv[optind];
    setvbuf(stdout, NULL, _IOLBF, 0);

    gwipc_error err = GWIPC_ERROR_INIT;
    gwipc_node *node = NULL;
    gwipc_proxy *proxy = NULL;
    gwipc_service_id svc = CALC_SERVICE;
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    if (gwipc_node_dial(socket_path, NULL, &node, &err) != GWIPC_OK ||
        gwipc_node_require(node, &svc, &pp, &proxy, &err) != GWIPC_OK || gwipc_node_run_thread(node) != GWIPC_OK) {
        fprintf(stderr, "method_client: %s\n", err.message);
        return 1;
    }
    int failures = 0;

    /* 1. Blocking; it first waits (within the timeout) for the service. */
    failures += call_upper(proxy, text, timeout_ms) != GWIPC_OK;
    /* 2. An application error, with a code and a payload. */
    failures += call_upper(proxy, "", timeout_ms) != GWIPC_E_APP;
    /* 3. A timeout: the server is told, and its late answer is dropped. */
    if (quick_ms > 0)
        failures += call_upper(proxy, "too slow", quick_ms) != GWIPC_E_TIMEOUT;

    /* 4. Asynchronous: returns at once; on_reply runs on the run thread. */
    static struct completion c; /* zeroed */
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    gwipc_call_id id = 0;
    int rc = gwipc_proxy_call_async(proxy, CALC_M_UPPER, "async", 5, timeout_ms * 1000, on_reply, &c, NULL, &id);
    if (rc != GWIPC_OK) {
        printf("call_async: %s\n", gwipc_strerror(rc));
        failures++;
    } else {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000 + 2; /* never wait unbounded */
        pthread_mutex_lock(&c.mu);
        while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &dl) != ETIMEDOUT) {
        }
        failures += !c.done || !c.ok;
        pthread_mutex_unlock(&c.mu);
    }

    /* 5. Fire-and-forget: no reply, no completion. */
    static const char bye[] = "method_client says goodbye";
    if (gwipc_proxy_send(proxy, CALC_M_LOG, bye, sizeof bye - 1) != GWIPC_OK)
        failures++;

    /* Flush the send and the goodbye (this also stops the run thread). */
    gwipc_node_stop(node);
    gwipc_node_shutdown(node, 1000000);
    printf("done: %d unexpected outcomes\n", failures);
    return failures ? 1 : 0;
}
