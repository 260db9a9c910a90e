/*
 * qb.c - the libqb baseline of `gwipc bench`: libqb's IPC over shared
 * memory (QB_IPC_SHM), service name -path.
 *
 * The server (role pub or serve) runs a qb_loop; the client (role sub or
 * call) connects and blocks in libqb's calls.
 *
 *   lat     the server sends each event with qb_ipcs_event_send when the
 *           client's acknowledgement (an 8-byte qb_ipcc_send request) for the
 *           previous one is in; the client takes it with qb_ipcc_event_recv.
 *   stream  the server sends every event as soon as the client is
 *           connected; when the event ring is full (-EAGAIN) it yields the
 *           CPU and tries again. The client reads every byte.
 *   rtt     the client calls qb_ipcc_sendv_recv; the server echoes the
 *           request with qb_ipcs_response_sendv.
 *
 * libqb needs its own header before each message (16 bytes on requests,
 * 24 on responses and events); the -size payload follows it. Each ring
 * holds -slots payloads (at least one payload and 4 KiB).
 */
#include "bench.h"

#include <errno.h>
#include <qb/qbipcc.h>
#include <qb/qbipcs.h>
#include <qb/qbloop.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define REQ_HDR sizeof(struct qb_ipc_request_header)
#define RES_HDR sizeof(struct qb_ipc_response_header)

static struct {
	struct opts o;
	qb_loop_t *loop;
	qb_ipcs_connection_t *conn;
	unsigned char *msg; /* response header + payload */
	struct sender s;
	struct receiver r;
	int done;           /* the run is over */
} g;

static size_t ring_size(void)
{
	size_t n = (size_t)g.o.slots * ((size_t)g.o.size + RES_HDR + 64);

	return n > (size_t)g.o.size + 4096 ? n : (size_t)g.o.size + 4096;
}

static unsigned char *payload(void) { return g.msg + RES_HDR; }

static void send_event(void)
{
	ssize_t res = qb_ipcs_event_send(g.conn, g.msg, RES_HDR + (size_t)g.o.size);

	if (res < 0) {
		errno = (int)-res;
		die("qb_ipcs_event_send:");
	}
}

/* lat: the next event; once the last one is acknowledged, the end of the
 * connection (the client waits for it, so that its last acknowledgement is
 * not lost in its own disconnect). */
static void lat_next(void)
{
	if (sender_next(&g.s)) {
		send_event();
		return;
	}
	g.done = 1;
	qb_ipcs_disconnect(g.conn);
}

/* stream: every event, in one go from the connection's creation (the loop
 * resends deferred notifications on the next send, and on POLLOUT once
 * this returns). A full event ring (-EAGAIN) is retried after yielding the
 * CPU, until PEER_TIMEOUT_MS passed without progress. */
static void stream_all(void)
{
	while (sender_next(&g.s)) {
		uint64_t deadline = now_ns() + (uint64_t)PEER_TIMEOUT_MS * 1000000u;
		ssize_t res;

		while ((res = qb_ipcs_event_send(g.conn, g.msg, RES_HDR + (size_t)g.o.size)) == -EAGAIN) {
			if (now_ns() > deadline)
				die("the client did not read for %d ms", PEER_TIMEOUT_MS);
			sched_yield();
		}
		if (res < 0) {
			errno = (int)-res;
			die("qb_ipcs_event_send:");
		}
	}
	g.done = 1;
}

static int32_t on_accept(qb_ipcs_connection_t *c, uid_t uid, gid_t gid)
{
	(void)c, (void)uid, (void)gid;
	return g.conn == NULL ? 0 : -EBUSY; /* one client */
}

static void on_created(qb_ipcs_connection_t *c)
{
	g.conn = c;
	if (!role_is(&g.o, "pub"))
		return;
	sender_init(&g.s, &g.o, payload());
	if (scenario_is(&g.o, "lat"))
		lat_next();
	else
		stream_all();
}

static int32_t on_msg(qb_ipcs_connection_t *c, void *data, size_t size)
{
	if (role_is(&g.o, "pub")) { /* an acknowledgement */
		if (!scenario_is(&g.o, "lat") || g.done)
			die("unexpected request from the client");
		lat_next();
		return 0;
	}
	/* serve: echo the request's payload after a response header. */
	if (size < REQ_HDR + HDR_BYTES)
		die("request of %zu bytes", size);
	unsigned char *p = (unsigned char *)data + REQ_HDR;
	size_t n = size - REQ_HDR;
	struct qb_ipc_response_header h = {.id = QB_IPC_MSG_USER_START, .size = (int32_t)(RES_HDR + n), .error = 0};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = RES_HDR}, {.iov_base = p, .iov_len = n}};

	g.done = receiver_got(&g.r, p, n);
	ssize_t res = qb_ipcs_response_sendv(c, iov, 2);
	if (res < 0) {
		errno = (int)-res;
		die("qb_ipcs_response_sendv:");
	}
	return 0;
}

static int32_t on_closed(qb_ipcs_connection_t *c)
{
	(void)c;
	return 0;
}

static void on_destroyed(qb_ipcs_connection_t *c)
{
	(void)c;
	qb_loop_stop(g.loop); /* the client is gone: the run is over */
}

static void on_timeout(void *data)
{
	(void)data;
	die("the run did not end within %d ms", PEER_TIMEOUT_MS);
}

/* Glue between the IPC service and the qb_loop it runs in. */
static int32_t job_add(enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
	return qb_loop_job_add(g.loop, p, data, fn);
}

static int32_t poll_add(enum qb_loop_priority p, int32_t fd, int32_t evts, void *data, qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_add(g.loop, p, fd, evts, data, fn);
}

static int32_t poll_mod(enum qb_loop_priority p, int32_t fd, int32_t evts, void *data, qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_mod(g.loop, p, fd, evts, data, fn);
}

static int32_t poll_del(int32_t fd) { return qb_loop_poll_del(g.loop, fd); }

static void serve(void)
{
	struct qb_ipcs_service_handlers sh = {
	    .connection_accept = on_accept,
	    .connection_created = on_created,
	    .msg_process = on_msg,
	    .connection_closed = on_closed,
	    .connection_destroyed = on_destroyed,
	};
	struct qb_ipcs_poll_handlers ph = {
	    .job_add = job_add, .dispatch_add = poll_add, .dispatch_mod = poll_mod, .dispatch_del = poll_del};
	qb_loop_timer_handle timer;

	g.loop = qb_loop_create();
	if (g.loop == NULL)
		die("qb_loop_create:");
	qb_ipcs_service_t *s = qb_ipcs_create(g.o.path, 0, QB_IPC_SHM, &sh);
	if (s == NULL)
		die("qb_ipcs_create:");
	qb_ipcs_enforce_buffer_size(s, (uint32_t)ring_size());
	qb_ipcs_poll_handlers_set(s, &ph);
	if (qb_ipcs_run(s) != 0)
		die("qb_ipcs_run:");
	if (qb_loop_timer_add(g.loop, QB_LOOP_HIGH, (uint64_t)PEER_TIMEOUT_MS * 1000000u, NULL, on_timeout, &timer))
		die("qb_loop_timer_add:");
	qb_loop_run(g.loop);
	qb_ipcs_destroy(s);
	if (!g.done)
		die("the client left before the end of the run");
	if (role_is(&g.o, "pub"))
		print_sender(&g.s);
	else
		print_receiver(&g.r);
}

/* connect retries until the server is up (it starts at the same time). */
static qb_ipcc_connection_t *connect_server(void)
{
	uint64_t deadline = now_ns() + (uint64_t)PEER_TIMEOUT_MS * 1000000u;

	for (;;) {
		qb_ipcc_connection_t *c = qb_ipcc_connect(g.o.path, ring_size());
		if (c != NULL)
			return c;
		if (now_ns() > deadline)
			die("qb_ipcc_connect %s:", g.o.path);
		usleep(1000);
	}
}

static void check(ssize_t res, const char *what)
{
	if (res < 0) {
		errno = (int)-res;
		die("%s:", what);
	}
}

static void client(void)
{
	qb_ipcc_connection_t *c = connect_server();
	size_t total = RES_HDR + (size_t)g.o.size;

	if (role_is(&g.o, "sub")) {
		struct qb_ipc_request_header ack = {.id = QB_IPC_MSG_USER_START, .size = REQ_HDR};
		int done = 0;

		while (!done) {
			ssize_t n = qb_ipcc_event_recv(c, g.msg, total, PEER_TIMEOUT_MS);
			check(n, "qb_ipcc_event_recv");
			done = receiver_got(&g.r, payload(), (size_t)n - RES_HDR);
			if (scenario_is(&g.o, "lat"))
				check(qb_ipcc_send(c, &ack, sizeof ack), "qb_ipcc_send");
		}
		if (scenario_is(&g.o, "lat")) {
			ssize_t n = qb_ipcc_event_recv(c, g.msg, total, PEER_TIMEOUT_MS);
			if (n >= 0)
				die("an event after the last one");
			if (n == -ETIMEDOUT || n == -EAGAIN)
				die("the server did not end the connection within %d ms", PEER_TIMEOUT_MS);
		}
		qb_ipcc_disconnect(c);
		print_receiver(&g.r);
		return;
	}
	/* call */
	struct caller cl;
	unsigned char *req = new_payload(&g.o);
	struct qb_ipc_request_header h = {.id = QB_IPC_MSG_USER_START, .size = (int32_t)(REQ_HDR + (size_t)g.o.size)};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = REQ_HDR}, {.iov_base = req, .iov_len = (size_t)g.o.size}};

	caller_init(&cl, &g.o, req);
	while (sender_next(&cl.s)) {
		ssize_t n = qb_ipcc_sendv_recv(c, iov, 2, g.msg, total, PEER_TIMEOUT_MS);
		check(n, "qb_ipcc_sendv_recv");
		caller_got(&cl, payload(), (size_t)n - RES_HDR);
	}
	qb_ipcc_disconnect(c);
	print_caller(&cl);
}

int main(int argc, char **argv)
{
	bench_init(argc, argv, &g.o);
	if (g.o.path == NULL)
		die("-path is required");
	g.msg = calloc(1, RES_HDR + (size_t)g.o.size);
	if (g.msg == NULL)
		die("allocating a message:");
	struct qb_ipc_response_header h = {.id = QB_IPC_MSG_USER_START, .size = (int32_t)(RES_HDR + (size_t)g.o.size)};
	memcpy(g.msg, &h, sizeof h);
	unsigned char *pattern = new_payload(&g.o);
	memcpy(payload(), pattern, (size_t)g.o.size);
	free(pattern);
	receiver_init(&g.r, &g.o);

	if (role_is(&g.o, "pub") || role_is(&g.o, "serve"))
		serve();
	else if (role_is(&g.o, "sub") || role_is(&g.o, "call"))
		client();
	else
		die("unknown role %s", g.o.role);
	return 0;
}
