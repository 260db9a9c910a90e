/*
 * zmq.c - the ZeroMQ baseline of `gwipc bench`, over ipc://-path.
 *
 *   lat     PAIR: pub stamps, sends and reads an 8-byte ack; sub receives,
 *           records the latency and sends the ack.
 *   stream  PAIR, default high-water marks: pub sends, sub reads every byte
 *           of each message in place and acknowledges only the stop
 *           message. (Not PUSH/PULL, as fast here: a PUSH closed right
 *           after its last send now and then loses the last few hundred
 *           messages, with any linger; the acknowledgement needs a way
 *           back.)
 *   rtt     REQ (call) to REP (serve), echoing the request.
 *
 * pub and serve bind, sub and call connect.
 *
 * Messages are received with zmq_msg_recv and read where ZeroMQ put them
 * (no copy out). Every send and receive times out after PEER_TIMEOUT_MS.
 */
#include "bench.h"

#include <stdio.h>
#include <zmq.h>

static void *open_socket(void *ctx, int type, const char *path, int bind)
{
	char ep[256];
	int t = PEER_TIMEOUT_MS, retry = 5; /* ms between connect attempts (default 100) */
	void *s = zmq_socket(ctx, type);

	if (s == NULL)
		die("zmq_socket: %s", zmq_strerror(zmq_errno()));
	if (zmq_setsockopt(s, ZMQ_RCVTIMEO, &t, sizeof t) || zmq_setsockopt(s, ZMQ_SNDTIMEO, &t, sizeof t) ||
	    zmq_setsockopt(s, ZMQ_LINGER, &t, sizeof t) || zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &retry, sizeof retry))
		die("zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
	if (snprintf(ep, sizeof ep, "ipc://%s", path) >= (int)sizeof ep)
		die("-path too long");
	if ((bind ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0)
		die("%s %s: %s", bind ? "zmq_bind" : "zmq_connect", ep, zmq_strerror(zmq_errno()));
	return s;
}

static void send_msg(void *s, const void *p, size_t n)
{
	if (zmq_send(s, p, n, 0) != (int)n)
		die("zmq_send: %s", zmq_strerror(zmq_errno()));
}

/* recv_msg receives the next message into m and returns its size. */
static size_t recv_msg(void *s, zmq_msg_t *m)
{
	int n = zmq_msg_recv(m, s, 0);

	if (n < 0)
		die("zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
	return (size_t)n;
}

int main(int argc, char **argv)
{
	struct opts o;
	unsigned char ack[8] = {0};
	zmq_msg_t m;
	int lat, type;

	bench_init(argc, argv, &o);
	if (o.path == NULL)
		die("-path is required");
	lat = scenario_is(&o, "lat");
	if (scenario_is(&o, "rtt"))
		type = role_is(&o, "call") ? ZMQ_REQ : ZMQ_REP;
	else
		type = ZMQ_PAIR;

	void *ctx = zmq_ctx_new();
	if (ctx == NULL)
		die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
	int binds = role_is(&o, "pub") || role_is(&o, "serve");
	void *s = open_socket(ctx, type, o.path, binds);
	unsigned char *buf = new_payload(&o);
	zmq_msg_init(&m);

	if (role_is(&o, "pub")) {
		struct sender snd;

		sender_init(&snd, &o, buf);
		while (sender_next(&snd)) {
			send_msg(s, buf, (size_t)o.size);
			if (lat && zmq_recv(s, ack, sizeof ack, 0) != sizeof ack)
				die("zmq_recv (ack): %s", zmq_strerror(zmq_errno()));
		}
		if (!lat && zmq_recv(s, ack, sizeof ack, 0) != sizeof ack)
			die("zmq_recv (the stop's ack): %s", zmq_strerror(zmq_errno()));
		print_sender(&snd);
	} else if (role_is(&o, "sub") || role_is(&o, "serve")) {
		struct receiver r;
		int done = 0;

		receiver_init(&r, &o);
		while (!done) {
			size_t n = recv_msg(s, &m);
			done = receiver_got(&r, zmq_msg_data(&m), n);
			if (role_is(&o, "serve"))
				send_msg(s, zmq_msg_data(&m), n);
			else if (lat || done)
				send_msg(s, ack, sizeof ack);
		}
		print_receiver(&r);
	} else if (role_is(&o, "call")) {
		struct caller c;

		caller_init(&c, &o, buf);
		while (sender_next(&c.s)) {
			send_msg(s, buf, (size_t)o.size);
			size_t n = recv_msg(s, &m);
			caller_got(&c, zmq_msg_data(&m), n);
		}
		print_caller(&c);
	} else {
		die("unknown role %s", o.role);
	}
	zmq_msg_close(&m);
	zmq_close(s);
	zmq_ctx_term(ctx);
	return 0;
}
