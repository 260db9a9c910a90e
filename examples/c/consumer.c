/*
 * consumer - subscribes to sensor_daemon's reading event and setpoint field.
 *
 *   consumer [-s SOCKET] [-n READINGS] [-t SECONDS]
 *
 * Prints every reading and setpoint it receives (the setpoint's current
 * value arrives at once: GWIPC_INITIAL_VALUE). Exits 0 after READINGS
 * readings (default: run until SIGINT/SIGTERM), 1 if -t SECONDS pass first.
 *
 * Unlike sensor_daemon it has no event loop of its own: it just calls
 * gwipc_node_dispatch with a timeout, which waits on the node's fd.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gwipc.h>

#include "sensor.h"

struct consumer {
    long readings, want;
    uint64_t last_seq;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Runs inside gwipc_node_dispatch. The sample and its data are borrowed: the
 * data is a read-only view of the provider's shared memory, released when
 * this returns (gwipc_sample_keep would hold it longer). */
static void on_sample(void *userdata, gwipc_proxy *proxy, const gwipc_sample *s)
{
    struct consumer *c = userdata;
    (void)proxy;
    if (s->event == SENSOR_EV_SETPOINT) {
        printf("setpoint: %.*s%s\n", (int)s->len, (const char *)s->data, s->requested ? " (requested)" : "");
        return;
    }
    if (c->last_seq && s->seq != c->last_seq + 1)
        printf("missed %llu readings\n", (unsigned long long)(s->seq - c->last_seq - 1));
    c->last_seq = s->seq;
    c->readings++;
    printf("reading #%llu: %.*s C\n", (unsigned long long)s->seq, (int)s->len, (const char *)s->data);
    if (c->want && c->readings >= c->want)
        stop = 1;
}

static void on_availability(void *userdata, gwipc_proxy *proxy, int available)
{
    (void)userdata, (void)proxy;
    printf("example.sensor/kitchen is %s\n", available ? "available" : "not available");
}

int main(int argc, char **argv)
{
    const char *socket_path = "gwipc-sensor.sock";
    long timeout_s = 0;
    struct consumer c = {0, 0, 0};
    int opt;
    while ((opt = getopt(argc, argv, "s:n:t:h")) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 'n': c.want = strtol(optarg, NULL, 10); break;
        case 't': timeout_s = strtol(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: consumer [-s SOCKET] [-n READINGS] [-t SECONDS]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* SA_ONSTACK: the handler may run on one of the Go runtime's threads. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    gwipc_error err = GWIPC_ERROR_INIT;
    gwipc_config *cfg = NULL;
    gwipc_node *node = NULL;
    gwipc_proxy *proxy = NULL;
    if (gwipc_config_new(&cfg) != GWIPC_OK || gwipc_config_set_name(cfg, "consumer") != GWIPC_OK)
        return 1;
    /* Returns at once; the connection is made (and remade) by dispatch. */
    int rc = gwipc_node_dial(socket_path, cfg, &node, &err);
    gwipc_config_free(cfg);
    if (rc != GWIPC_OK) {
        fprintf(stderr, "consumer: dial %s: %s\n", socket_path, err.message);
        return 1;
    }
    gwipc_service_id svc = SENSOR_SERVICE;
    gwipc_proxy_params pp = GWIPC_PROXY_PARAMS_INIT;
    pp.on_availability = on_availability;
    rc = gwipc_node_require(node, &svc, &pp, &proxy, &err);
    /* Subscriptions are kept across loss and rebinding, so we can subscribe
     * before the service is available. */
    if (rc == GWIPC_OK)
        rc = gwipc_proxy_subscribe(proxy, SENSOR_EV_READING, GWIPC_UPDATES, on_sample, &c, NULL);
    if (rc == GWIPC_OK)
        rc = gwipc_proxy_subscribe(proxy, SENSOR_EV_SETPOINT, GWIPC_INITIAL_VALUE, on_sample, &c, NULL);
    if (rc != GWIPC_OK) {
        fprintf(stderr, "consumer: %s\n", gwipc_strerror(rc));
        return 1;
    }

    time_t deadline = timeout_s ? time(NULL) + timeout_s : 0;
    while (!stop) {
        rc = gwipc_node_dispatch(node, 100000); /* wait up to 100 ms, then run callbacks */
        if (rc < 0) {
            fprintf(stderr, "consumer: dispatch: %s\n", gwipc_strerror(rc));
            break;
        }
        if (deadline && time(NULL) >= deadline) {
            fprintf(stderr, "consumer: timed out after %ld s with %ld readings\n", timeout_s, c.readings);
            gwipc_node_close(node);
            return 1;
        }
    }
    printf("done: %ld readings\n", c.readings);
    gwipc_node_close(node); /* closes the proxy too */
    return rc < 0 ? 1 : 0;
}
