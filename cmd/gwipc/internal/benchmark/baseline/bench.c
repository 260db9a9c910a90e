/* bench.c - the baseline programs' shared code; see bench.h. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

static const char *prog = "bench";

void die(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	size_t n = strlen(fmt);

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(e));
	fputc('\n', stderr);
	exit(1);
}

static long parse_long(const char *name, const char *v)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *v == '\0' || *end != '\0')
		die("-%s=%s: not a number", name, v);
	return x;
}

void bench_init(int argc, char **argv, struct opts *o)
{
	prog = argv[0];
	memset(o, 0, sizeof *o);
	o->cpu = -1;
	o->subs = 1;
	o->slots = 1;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], *eq = strchr(a, '=');
		if (a[0] != '-' || eq == NULL)
			die("argument %s: want -name=value", a);
		*eq = '\0';
		const char *name = a + 1, *v = eq + 1;
		if (!strcmp(name, "role"))
			o->role = v;
		else if (!strcmp(name, "scenario"))
			o->scenario = v;
		else if (!strcmp(name, "path"))
			o->path = v;
		else if (!strcmp(name, "size"))
			o->size = parse_long(name, v);
		else if (!strcmp(name, "n"))
			o->n = parse_long(name, v);
		else if (!strcmp(name, "warm"))
			o->warm = parse_long(name, v);
		else if (!strcmp(name, "dur_ms"))
			o->dur_ms = parse_long(name, v);
		else if (!strcmp(name, "warm_ms"))
			o->warm_ms = parse_long(name, v);
		else if (!strcmp(name, "subs"))
			o->subs = parse_long(name, v);
		else if (!strcmp(name, "slots"))
			o->slots = parse_long(name, v);
		else if (!strcmp(name, "cpu"))
			o->cpu = (int)parse_long(name, v);
		else
			die("unknown argument -%s", name);
	}
	if (o->role == NULL || o->scenario == NULL)
		die("-role and -scenario are required");
	if (o->size < HDR_BYTES || o->size % 8 != 0)
		die("-size=%ld: want a multiple of 8, at least %d", o->size, HDR_BYTES);
	if (o->subs < 1 || o->slots < 1 || o->n < 0 || o->warm < 0)
		die("-subs, -slots, -n and -warm must not be negative (subs and slots at least 1)");
	if (!scenario_is(o, "stream") && o->n < 1)
		die("-n=%ld: want at least 1", o->n);
	if (o->cpu >= 0) {
		/* Before any thread exists: threads a library starts later
		 * (ZeroMQ's I/O thread) inherit the mask. */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o->cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) != 0)
			die("sched_setaffinity to CPU %d:", o->cpu);
	}
}

int role_is(const struct opts *o, const char *role) { return strcmp(o->role, role) == 0; }

int scenario_is(const struct opts *o, const char *scenario) { return strcmp(o->scenario, scenario) == 0; }

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		die("getrusage:");
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

uint64_t get_word(const unsigned char *p, int word)
{
	uint64_t v;

	memcpy(&v, p + 8 * word, 8); /* little-endian: x86 and arm64 Linux */
	return v;
}

void put_word(unsigned char *p, int word, uint64_t v) { memcpy(p + 8 * word, &v, 8); }

unsigned char *new_payload(const struct opts *o)
{
	unsigned char *p = calloc(1, (size_t)o->size);

	if (p == NULL)
		die("allocating %ld bytes:", o->size);
	for (long i = HDR_BYTES; i < o->size; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	return p;
}

/* sum_payload adds up the 64-bit words after the header: the receiver's
 * read of every byte. Four sums keep the loads independent. */
static uint64_t sum_payload(const unsigned char *p, size_t n)
{
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, w[4];
	size_t i = HDR_BYTES;

	for (; i + 32 <= n; i += 32) {
		memcpy(w, p + i, 32);
		s0 += w[0];
		s1 += w[1];
		s2 += w[2];
		s3 += w[3];
	}
	for (; i + 8 <= n; i += 8) {
		memcpy(w, p + i, 8);
		s0 += w[0];
	}
	return s0 + s1 + s2 + s3;
}

void window_start(struct window *w)
{
	w->t0 = now_ns();
	w->cpu0 = cpu_ns();
}

void window_end(struct window *w)
{
	w->t1 = now_ns();
	w->cpu1 = cpu_ns();
}

void sender_init(struct sender *s, const struct opts *o, unsigned char *buf)
{
	memset(s, 0, sizeof *s);
	s->o = o;
	s->buf = buf;
	s->phase = PHASE_WARM;
	s->deadline = now_ns() + (uint64_t)o->warm_ms * 1000000u;
}

/* stream_phase advances the stream's phase by the clock, read for every
 * message from 1 KiB up and every 64th below (the clock costs as much as a
 * small message). */
static void stream_phase(struct sender *s)
{
	if (s->o->size < 1024 && s->seq % 64 != 0)
		return;
	uint64_t t = now_ns();
	if (t < s->deadline)
		return;
	if (s->phase == PHASE_WARM) {
		s->phase = PHASE_TIMED;
		s->deadline = t + (uint64_t)s->o->dur_ms * 1000000u;
		window_start(&s->w);
	} else if (s->phase == PHASE_TIMED) {
		window_end(&s->w);
		s->phase = PHASE_STOP;
	}
}

int sender_next(struct sender *s)
{
	const struct opts *o = s->o;

	if (s->seq == UINT64_MAX) /* over */
		return 0;
	if (scenario_is(o, "stream")) {
		if (s->phase == PHASE_STOP) { /* the stop message went out */
			s->seq = UINT64_MAX;
			return 0;
		}
		stream_phase(s);
		if (s->phase == PHASE_TIMED)
			s->ops++;
	} else {
		if (s->seq == (uint64_t)(o->warm + o->n)) {
			window_end(&s->w);
			s->seq = UINT64_MAX;
			return 0;
		}
		if (s->seq == (uint64_t)o->warm)
			window_start(&s->w);
		if (s->seq >= (uint64_t)o->warm)
			s->ops++;
	}
	put_word(s->buf, HDR_SEQ, s->seq++);
	put_word(s->buf, HDR_PHASE, (uint64_t)s->phase);
	put_word(s->buf, HDR_STAMP, now_ns());
	return 1;
}

void receiver_init(struct receiver *r, const struct opts *o)
{
	memset(r, 0, sizeof *r);
	r->o = o;
	if (scenario_is(o, "lat")) {
		r->samples = calloc((size_t)o->n, sizeof *r->samples);
		if (r->samples == NULL)
			die("allocating %ld samples:", o->n);
	}
}

int receiver_got(struct receiver *r, const unsigned char *msg, size_t len)
{
	uint64_t t = now_ns();
	const struct opts *o = r->o;
	uint64_t seq = get_word(msg, HDR_SEQ), warm = (uint64_t)o->warm;

	if (len != (size_t)o->size)
		die("message %" PRIu64 " has %zu bytes, want %ld", seq, len, o->size);
	if (seq != r->expect)
		die("message %" PRIu64 " arrived, want %" PRIu64 " (lost or reordered)", seq, r->expect);
	r->expect++;
	if (scenario_is(o, "stream")) {
		switch (get_word(msg, HDR_PHASE)) {
		case PHASE_TIMED:
			if (r->ops == 0)
				window_start(&r->w);
			r->ops++;
			r->bytes += len;
			r->sum += sum_payload(msg, len);
			return 0;
		case PHASE_STOP:
			if (r->ops == 0)
				die("stop before any timed message");
			window_end(&r->w);
			return 1;
		}
		return 0;
	}
	if (seq == warm)
		window_start(&r->w);
	if (seq < warm)
		return 0;
	if (r->samples)
		r->samples[seq - warm] = (int64_t)(t - get_word(msg, HDR_STAMP));
	r->ops++;
	if (seq + 1 < warm + (uint64_t)o->n)
		return 0;
	window_end(&r->w);
	return 1;
}

void caller_init(struct caller *c, const struct opts *o, unsigned char *buf)
{
	sender_init(&c->s, o, buf);
	c->samples = calloc((size_t)o->n, sizeof *c->samples);
	if (c->samples == NULL)
		die("allocating %ld samples:", o->n);
}

void caller_got(struct caller *c, const unsigned char *reply, size_t len)
{
	uint64_t t = now_ns();
	uint64_t seq = get_word(reply, HDR_SEQ), warm = (uint64_t)c->s.o->warm;

	if (len != (size_t)c->s.o->size || seq + 1 != c->s.seq)
		die("reply %" PRIu64 " of %zu bytes, want %" PRIu64 " of %ld", seq, len, c->s.seq - 1,
		    c->s.o->size);
	if (seq >= warm)
		c->samples[seq - warm] = (int64_t)(t - get_word(reply, HDR_STAMP));
}

static void print_head(uint64_t ops, const struct window *w)
{
	printf("{\"ops\":%" PRIu64 ",\"cpu_ns\":%" PRIu64 ",\"elapsed_ns\":%" PRIu64, ops, w->cpu1 - w->cpu0,
	       w->t1 - w->t0);
}

static void print_samples(const int64_t *samples, long n)
{
	printf(",\"samples\":[");
	for (long i = 0; i < n; i++)
		printf(i ? ",%" PRId64 : "%" PRId64, samples[i]);
	printf("]");
}

static void print_end(void)
{
	printf("}\n");
	if (fflush(stdout) != 0)
		die("writing the result:");
}

void print_sender(const struct sender *s)
{
	print_head(s->ops, &s->w);
	print_end();
}

void print_receiver(const struct receiver *r)
{
	print_head(r->ops, &r->w);
	printf(",\"bytes\":%" PRIu64 ",\"checksum\":%" PRIu64, r->bytes, r->sum);
	if (r->samples)
		print_samples(r->samples, r->o->n);
	print_end();
}

void print_caller(const struct caller *c)
{
	print_head(c->s.ops, &c->s.w);
	print_samples(c->samples, c->s.o->n);
	print_end();
}

void send_all(int fd, const void *p, size_t n)
{
	const char *b = p;

	while (n > 0) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			die("send: the peer did not read for %d ms", PEER_TIMEOUT_MS);
		if (k < 0)
			die("send:");
		b += k;
		n -= (size_t)k;
	}
}

void recv_all(int fd, void *p, size_t n)
{
	char *b = p;

	while (n > 0) {
		ssize_t k = recv(fd, b, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			die("recv: nothing from the peer for %d ms", PEER_TIMEOUT_MS);
		if (k < 0)
			die("recv:");
		if (k == 0)
			die("recv: the peer closed the connection");
		b += k;
		n -= (size_t)k;
	}
}

void set_timeouts(int fd)
{
	struct timeval tv = {.tv_sec = PEER_TIMEOUT_MS / 1000, .tv_usec = PEER_TIMEOUT_MS % 1000 * 1000};

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
		die("setsockopt SO_RCVTIMEO/SO_SNDTIMEO:");
}
