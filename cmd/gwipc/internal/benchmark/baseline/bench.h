/*
 * bench.h - what the baseline programs of `gwipc bench` share.
 *
 * Each program is one process of a two-process (or, for fan-out,
 * five-process) measurement started by the Go harness. It takes its role
 * and parameters as -name=value arguments, pins itself, runs, and prints
 * one JSON line with its counts, its CPU time and (for receivers and
 * callers) its latency samples. Any failure is a message on stderr and exit
 * status 1; the harness then fails the run.
 *
 * Every payload starts with three little-endian 64-bit words: a sequence
 * number (from 0, contiguous: a receiver fails on a gap), the sender's
 * CLOCK_MONOTONIC stamp taken just before sending (latency scenarios) and
 * the phase (stream scenario). The rest is a fixed pattern; stream
 * receivers sum it as 64-bit words, so every byte is read, and the harness
 * checks the sum.
 *
 * Scenarios:
 *   lat     one message in flight: the sender stamps, sends, and waits for
 *           the receiver's acknowledgement before the next; the receiver
 *           subtracts the stamp from its clock when the message is in.
 *   stream  the sender sends for warm_ms, then for dur_ms (timed), then one
 *           stop message; the receiver reads and sums every byte.
 *   rtt     the caller sends a request and waits for the reply of the same
 *           size; it records the round trip.
 */
#ifndef GWIPC_BENCH_H
#define GWIPC_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* The payload header: word indices. */
enum { HDR_SEQ, HDR_STAMP, HDR_PHASE, HDR_WORDS };
#define HDR_BYTES (HDR_WORDS * 8)

/* Stream phases. */
enum { PHASE_WARM, PHASE_TIMED, PHASE_STOP };

/* How long a program waits for its peer before it gives up. The harness
 * kills a run a little later. */
#define PEER_TIMEOUT_MS 25000

/* The command line. */
struct opts {
	const char *role;     /* pub, sub, call or serve */
	const char *scenario; /* lat, stream or rtt */
	const char *path;     /* where to meet the peer (libqb, ZeroMQ) */
	long size;            /* payload bytes, a multiple of 8, >= HDR_BYTES */
	long n, warm;         /* lat, rtt: timed and untimed messages */
	long dur_ms, warm_ms; /* stream: timed and untimed milliseconds */
	long subs;            /* pub: receivers (fds 3, 4, ...) */
	long slots;           /* buffering, in payloads, where the transport has a knob */
	int cpu;              /* CPU to pin every thread to; -1: not pinned */
};

/* bench_init parses the arguments and pins the process. */
void bench_init(int argc, char **argv, struct opts *o);

/* die prints "prog: message" (and errno's text if the format ends in ':')
 * and exits with status 1. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);

int role_is(const struct opts *o, const char *role);
int scenario_is(const struct opts *o, const char *scenario);

uint64_t now_ns(void); /* CLOCK_MONOTONIC */

uint64_t get_word(const unsigned char *p, int word);
void put_word(unsigned char *p, int word, uint64_t v);

/* new_payload returns o->size bytes holding the pattern. */
unsigned char *new_payload(const struct opts *o);

/* A measurement window: wall clock and CPU time (user + system, all
 * threads) at its start and end. */
struct window {
	uint64_t t0, cpu0, t1, cpu1;
};
void window_start(struct window *w);
void window_end(struct window *w);

/*
 * The sender of lat, stream and rtt. sender_next writes the next message's
 * header into buf and returns 1, or returns 0 when the run is over. For lat
 * and rtt it opens the window before message warm and closes it once
 * message warm+n-1 is acknowledged (the call after it); for stream it opens
 * the window before the first timed message and closes it before the stop
 * message. The stamp is taken last, so send right after.
 */
struct sender {
	const struct opts *o;
	unsigned char *buf;
	uint64_t seq, ops, deadline;
	int phase;
	struct window w;
};
void sender_init(struct sender *s, const struct opts *o, unsigned char *buf);
int sender_next(struct sender *s);

/*
 * The receiver of lat, stream and rtt (the rtt server). receiver_got checks
 * one message of len bytes and returns 1 when it was the last one. lat
 * records one latency sample per timed message; stream counts and sums the
 * timed messages' bytes.
 */
struct receiver {
	const struct opts *o;
	uint64_t expect, ops, bytes, sum;
	int64_t *samples;
	struct window w;
};
void receiver_init(struct receiver *r, const struct opts *o);
int receiver_got(struct receiver *r, const unsigned char *msg, size_t len);

/* The rtt caller: a sender (call sender_next before each request) that
 * records each round trip from the stamp its reply echoes. */
struct caller {
	struct sender s;
	int64_t *samples;
};
void caller_init(struct caller *c, const struct opts *o, unsigned char *buf);
void caller_got(struct caller *c, const unsigned char *reply, size_t len);

/* The result line. */
void print_sender(const struct sender *s);
void print_receiver(const struct receiver *r);
void print_caller(const struct caller *c);

/* Whole-buffer I/O on a blocking socket (SOCK_STREAM or SOCK_SEQPACKET):
 * they fail the program on error, EOF or timeout. */
void send_all(int fd, const void *p, size_t n);
void recv_all(int fd, void *p, size_t n);

/* set_timeouts bounds every blocking send and receive on fd. */
void set_timeouts(int fd);

#endif
