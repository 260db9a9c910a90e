/*
 * sensor_daemon - a gwipc provider driven from the program's own epoll loop.
 *
 * It listens on a socket and offers "example.sensor" (sensor.h) with
 *   - an event (SENSOR_EV_READING) published from a timerfd of its own,
 *     written in place into shared memory (a zero-copy loan);
 *   - a field (SENSOR_EV_SETPOINT): the latest value is cached by gwipc, so a
 *     consumer subscribing with GWIPC_INITIAL_VALUE gets it at once;
 *   - a method (SENSOR_M_SET_SETPOINT) that changes the field.
 * With -S it also serves a status endpoint (try `status_query -s PATH status`)
 * with one application command, "readings".
 *
 *   sensor_daemon [-s SOCKET] [-S STATUS_SOCKET] [-n READINGS] [-i INTERVAL_MS]
 *
 * -n 0 (the default) publishes until SIGTERM or SIGINT; either signal makes
 * it withdraw its offer, say goodbye to its peers and exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <gwipc.h>

#include "sensor.h"

struct daemon {
    gwipc_node *node;
    gwipc_offer *offer;
    double setpoint;
    unsigned long published, skipped;
    char last[32]; /* the last reading, for the "readings" command */
};

/* ---- Signals --------------------------------------------------------------
 * libgwipc contains a Go runtime, and this program links it, so the runtime
 * and its threads exist before main() runs. Blocking SIGTERM here and reading
 * it with signalfd would not work: the signal would be delivered to one of the
 * runtime's threads, which do not block it, and kill the process. (That works
 * only when the signals are blocked before the library is loaded, i.e. with
 * dlopen() after sigprocmask().) So we install ordinary handlers, with
 * SA_ONSTACK as the header requires (the handler may run on a Go thread, which
 * has only a small stack plus its alternate signal stack), and the handler
 * writes a byte to a self-pipe that is in the epoll set. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(sig_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    errno = saved;
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGINT, &sa, NULL) != 0) {
        perror("sensor_daemon: signals");
        exit(1);
    }
}

/* ---- Publishing ----------------------------------------------------------- */

static void publish_setpoint(struct daemon *d)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%.1f", d->setpoint);
    /* Copying publish; the field also caches it for later subscribers. */
    int rc = gwipc_offer_publish(d->offer, SENSOR_EV_SETPOINT, text, (size_t)n, 0);
    if (rc < 0)
        fprintf(stderr, "sensor_daemon: publishing the setpoint: %s\n", gwipc_strerror(rc));
}

static void publish_reading(struct daemon *d)
{
    /* A made-up temperature: a slow saw-tooth around the setpoint. */
    double value = d->setpoint + (double)(d->published % 8) * 0.25 - 1.0;
    gwipc_loan loan = {0};
    /* Zero copy: borrow a slot and write the reading straight into shared
     * memory. wait 0: never block the loop; with every slot held by slow
     * subscribers we skip this reading (counted in d->skipped; the next
     * reading still gets the next sequence number). */
    int rc = gwipc_offer_loan(d->offer, SENSOR_EV_READING, 0, &loan);
    if (rc == GWIPC_E_NOSLOT) {
        d->skipped++;
        return;
    }
    if (rc < 0) {
        fprintf(stderr, "sensor_daemon: loan: %s\n", gwipc_strerror(rc));
        return;
    }
    int n = snprintf(loan.data, loan.capacity, "%.2f", value);
    rc = gwipc_loan_publish(&loan, (size_t)n);
    if (rc < 0) {
        fprintf(stderr, "sensor_daemon: publish: %s\n", gwipc_strerror(rc));
        gwipc_loan_discard(&loan); /* only GWIPC_E_TOO_LARGE leaves it open */
        return;
    }
    d->published++;
    snprintf(d->last, sizeof d->last, "%.2f", value);
    printf("published reading #%lu %s\n", d->published, d->last);
}

/* ---- Callbacks: they all run inside gwipc_node_dispatch, on main's thread - */

static void on_call(void *userdata, gwipc_offer *offer, const gwipc_call *call)
{
    struct daemon *d = userdata;
    char text[32], *end;
    size_t n = call->len < sizeof text - 1 ? call->len : sizeof text - 1;
    (void)offer;
    if (n)
        memcpy(text, call->data, n); /* call->data is not NUL-terminated */
    text[n] = '\0';
    double v = strtod(text, &end);
    if (n == 0 || *end != '\0' || v < -50 || v > 100) {
        static const char msg[] = "setpoint must be a number in [-50, 100]";
        gwipc_call_fail(call, 1, msg, sizeof msg - 1);
        return;
    }
    char reply[32];
    int rn = snprintf(reply, sizeof reply, "old=%.1f", d->setpoint);
    d->setpoint = v;
    printf("setpoint changed to %.1f by peer %llu\n", v, (unsigned long long)call->peer);
    gwipc_call_reply(call, reply, (size_t)rn); /* answered at once; see method_server.c for later */
    publish_setpoint(d);
}

static void on_update_request(void *userdata, gwipc_offer *offer, uint16_t event)
{
    (void)offer;
    if (event == SENSOR_EV_SETPOINT)
        publish_setpoint(userdata);
}

static void on_subscription(void *userdata, gwipc_offer *offer, uint16_t event, int subscribed)
{
    (void)userdata, (void)offer;
    printf("event %u: %s\n", event, subscribed ? "first subscriber arrived" : "last subscriber left");
}

static void on_peer(void *userdata, gwipc_node *node, const gwipc_peer_info *peer)
{
    (void)userdata, (void)node;
    printf("peer %llu \"%s\" connected (pid %d, uid %u)\n", (unsigned long long)peer->id, peer->name,
           (int)peer->pid, (unsigned)peer->uid);
}

static void on_peer_gone(void *userdata, gwipc_node *node, const gwipc_peer_info *peer, const gwipc_error *why)
{
    (void)userdata, (void)node;
    printf("peer %llu \"%s\" left%s%s\n", (unsigned long long)peer->id, peer->name, why ? ": " : "",
           why ? why->message : "");
}

/* "readings" on the status endpoint: runs inside dispatch too. */
static int on_readings_command(void *userdata, const void *request, size_t len, gwipc_writer *w)
{
    struct daemon *d = userdata;
    char text[128];
    (void)request, (void)len;
    int n = snprintf(text, sizeof text, "%lu readings published, %lu skipped, last %s, setpoint %.1f\n",
                     d->published, d->skipped, d->published ? d->last : "-", d->setpoint);
    return gwipc_writer_write(w, text, (size_t)n) == GWIPC_OK ? 0 : 1;
}

/* ---- Set-up and the loop -------------------------------------------------- */

static void die(const char *what, int rc, const gwipc_error *err)
{
    fprintf(stderr, "sensor_daemon: %s: %s%s%s\n", what, gwipc_strerror(rc), err && err->message[0] ? ": " : "",
            err ? err->message : "");
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: sensor_daemon [-s SOCKET] [-S STATUS_SOCKET] [-n READINGS] [-i INTERVAL_MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *socket_path = "gwipc-sensor.sock", *status_path = NULL;
    long count = 0, interval_ms = 500;
    int opt;
    while ((opt = getopt(argc, argv, "s:S:n:i:h")) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 'S': status_path = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'i': interval_ms = strtol(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (optind != argc || count < 0 || interval_ms <= 0)
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, also into a pipe */
    install_signal_handlers();

    struct daemon d = {NULL, NULL, 20.0, 0, 0, ""};
    gwipc_error err = GWIPC_ERROR_INIT;
    gwipc_config *cfg = NULL;
    int rc = gwipc_config_new(&cfg);
    if (rc == GWIPC_OK)
        rc = gwipc_config_set_name(cfg, "sensor_daemon");
    if (rc == GWIPC_OK)
        rc = gwipc_config_set_peer_callbacks(cfg, on_peer, on_peer_gone, NULL, NULL);
    if (rc == GWIPC_OK && status_path)
        rc = gwipc_config_set_status_path(cfg, status_path, 0600);
    if (rc != GWIPC_OK)
        die("configuration", rc, NULL);
    rc = gwipc_node_listen(socket_path, cfg, &d.node, &err);
    gwipc_config_free(cfg); /* the node copied what it needs */
    if (rc != GWIPC_OK)
        die("listen", rc, &err);

    gwipc_service_id svc = SENSOR_SERVICE;
    static const uint16_t fields[] = {SENSOR_EV_SETPOINT};
    gwipc_offer_params params = GWIPC_OFFER_PARAMS_INIT;
    params.events = SENSOR_EVENTS;
    params.methods = SENSOR_METHODS;
    params.fields = fields;
    params.n_fields = 1;
    params.on_call = on_call;
    params.on_update_request = on_update_request;
    params.on_subscription = on_subscription;
    params.userdata = &d;
    rc = gwipc_node_offer(d.node, &svc, &params, &d.offer, &err);
    if (rc != GWIPC_OK)
        die("offer", rc, &err);
    publish_setpoint(&d); /* the field's first value */
    if (status_path) {
        rc = gwipc_node_handle_command(d.node, "readings", on_readings_command, &d, NULL);
        if (rc != GWIPC_OK)
            die("command", rc, NULL);
    }

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {{interval_ms / 1000, (interval_ms % 1000) * 1000000L},
                             {interval_ms / 1000, (interval_ms % 1000) * 1000000L}};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    int node_fd = gwipc_node_fd(d.node); /* owned by the node: never read or close it */
    if (tfd < 0 || ep < 0 || node_fd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0) {
        perror("sensor_daemon: set-up");
        return 1;
    }
    ev.data.fd = node_fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, node_fd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.fd = sig_pipe[0];
    epoll_ctl(ep, EPOLL_CTL_ADD, sig_pipe[0], &ev);
    printf("offering example.sensor/kitchen@1.0 on %s\n", socket_path);

    int stop = 0, more = 0;
    while (!stop) {
        struct epoll_event evs[3];
        /* If the last dispatch left work (GWIPC_DISPATCH_MORE), only peek at
         * the other sources, then dispatch again. */
        int n = epoll_wait(ep, evs, 3, more ? 0 : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("sensor_daemon: epoll_wait");
            return 1;
        }
        int node_ready = more;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == node_fd) {
                node_ready = 1;
            } else if (evs[i].data.fd == tfd) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks) {
                    publish_reading(&d);
                    if (count && (long)d.published >= count)
                        stop = 1;
                }
            } else {
                char c;
                while (read(sig_pipe[0], &c, 1) == 1)
                    printf("signal %d: stopping\n", c);
                stop = 1;
            }
        }
        if (node_ready) {
            rc = gwipc_node_dispatch(d.node, 0); /* callbacks run here, on this thread */
            if (rc < 0) {
                fprintf(stderr, "sensor_daemon: dispatch: %s\n", gwipc_strerror(rc));
                return 1;
            }
            more = (rc & GWIPC_DISPATCH_MORE) != 0;
        }
    }

    printf("done: %lu readings published, %lu skipped\n", d.published, d.skipped);
    /* Withdraw the offer and tell the peers, waiting up to 1 s for the
     * goodbyes to be written; closes the node in any case. */
    rc = gwipc_node_shutdown(d.node, 1000000);
    if (rc != GWIPC_OK)
        fprintf(stderr, "sensor_daemon: shutdown: %s\n", gwipc_strerror(rc));
    close(ep);
    close(tfd);
    return 0;
}
