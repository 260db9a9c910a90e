/*
 * uds.c - the raw Unix-domain socket baseline of `gwipc bench`.
 *
 * The harness creates the socketpairs (SOCK_SEQPACKET, or SOCK_STREAM for
 * payloads larger than a datagram) and passes them as fds 3, 4, ...: the
 * publisher or caller gets one per receiver, each receiver its own end.
 * Every message is one blocking send of the whole payload; a receiver reads
 * it whole (one recv for SEQPACKET, as many as it takes for STREAM), so the
 * same code serves both socket types.
 *
 *   lat     pub: stamp, send to every receiver, read every 8-byte ack.
 *           sub: read, record the latency, send the ack.
 *   stream  pub: send as fast as the socket takes it. sub: read and sum.
 *   rtt     call: send the request, read the echo. serve: read, echo.
 */
#include "bench.h"

#include <stdlib.h>
#include <unistd.h>

#define FIRST_FD 3

int main(int argc, char **argv)
{
	struct opts o;
	unsigned char ack[8] = {0};

	bench_init(argc, argv, &o);
	unsigned char *buf = new_payload(&o);
	int nfd = role_is(&o, "pub") ? (int)o.subs : 1;
	for (int i = 0; i < nfd; i++)
		set_timeouts(FIRST_FD + i);

	if (role_is(&o, "pub")) {
		struct sender s;
		int lat = scenario_is(&o, "lat");

		sender_init(&s, &o, buf);
		while (sender_next(&s)) {
			for (int i = 0; i < nfd; i++)
				send_all(FIRST_FD + i, buf, (size_t)o.size);
			for (int i = 0; lat && i < nfd; i++)
				recv_all(FIRST_FD + i, ack, sizeof ack);
		}
		print_sender(&s);
	} else if (role_is(&o, "sub") || role_is(&o, "serve")) {
		struct receiver r;
		int done = 0;

		receiver_init(&r, &o);
		while (!done) {
			recv_all(FIRST_FD, buf, (size_t)o.size);
			done = receiver_got(&r, buf, (size_t)o.size);
			if (role_is(&o, "serve"))
				send_all(FIRST_FD, buf, (size_t)o.size);
			else if (scenario_is(&o, "lat"))
				send_all(FIRST_FD, ack, sizeof ack);
		}
		print_receiver(&r);
	} else if (role_is(&o, "call")) {
		struct caller c;
		unsigned char *reply = new_payload(&o);

		caller_init(&c, &o, buf);
		while (sender_next(&c.s)) {
			send_all(FIRST_FD, buf, (size_t)o.size);
			recv_all(FIRST_FD, reply, (size_t)o.size);
			caller_got(&c, reply, (size_t)o.size);
		}
		print_caller(&c);
	} else {
		die("unknown role %s", o.role);
	}
	return 0;
}
