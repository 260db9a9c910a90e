/*
 * memfd.c - the bare shared-memory floor of `gwipc bench`: the least any
 * design that hands payloads over in shared memory has to do.
 *
 * The writer (role pub) creates a memfd with -slots slots of -size bytes,
 * seals it against resizing and passes it to the reader (role sub) over the
 * socket on fd 3. Each slot has a state word in the first page: 0 empty,
 * 1 full. The writer waits for its next slot to be empty, copies the whole
 * payload in, marks it full and wakes the reader; the reader waits for it to
 * be full, reads (sums) every byte, marks it empty and wakes the writer.
 * Waiting is FUTEX_WAIT on the state word; every hand-off wakes the peer
 * (one FUTEX_WAKE per payload per side, a few hundred ns against the tens of
 * microseconds a large payload takes). Only the stream scenario.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SOCK_FD 3
#define CONTROL 4096 /* the state words' page */
#define STATE_STRIDE 64 /* one cache line per state word */

struct pool {
	unsigned char *base;
	long slots, stride;
};

static _Atomic uint32_t *state(const struct pool *p, long k)
{
	return (_Atomic uint32_t *)(p->base + (k % p->slots) * STATE_STRIDE);
}

static unsigned char *slot(const struct pool *p, long k) { return p->base + CONTROL + (k % p->slots) * p->stride; }

/* wait_for blocks until *w == want; the peer only ever flips it. */
static void wait_for(_Atomic uint32_t *w, uint32_t want)
{
	struct timespec ts = {.tv_sec = PEER_TIMEOUT_MS / 1000, .tv_nsec = PEER_TIMEOUT_MS % 1000 * 1000000L};

	while (atomic_load_explicit(w, memory_order_acquire) != want) {
		if (syscall(SYS_futex, w, FUTEX_WAIT, !want, &ts, NULL, 0) != 0 && errno != EAGAIN && errno != EINTR) {
			if (errno == ETIMEDOUT)
				die("the peer did not hand a slot over for %d ms", PEER_TIMEOUT_MS);
			die("futex wait:");
		}
	}
}

static void set_and_wake(_Atomic uint32_t *w, uint32_t v)
{
	atomic_store_explicit(w, v, memory_order_release);
	if (syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
		die("futex wake:");
}

static struct pool map_pool(int fd, const struct opts *o)
{
	struct pool p = {.slots = o->slots, .stride = (o->size + 63) & ~63L};
	size_t size = CONTROL + (size_t)(p.slots * p.stride);
	struct stat st;

	if (o->slots * STATE_STRIDE > CONTROL)
		die("-slots=%ld: at most %d", o->slots, CONTROL / STATE_STRIDE);
	if (fstat(fd, &st) != 0)
		die("fstat:");
	if ((size_t)st.st_size != size)
		die("the memfd has %lld bytes, want %zu", (long long)st.st_size, size);
	p.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p.base == MAP_FAILED)
		die("mmap:");
	return p;
}

static int create_memfd(const struct opts *o)
{
	long stride = (o->size + 63) & ~63L;
	int fd = memfd_create("gwipc-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		die("memfd_create:");
	if (ftruncate(fd, CONTROL + o->slots * stride) != 0)
		die("ftruncate:");
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
		die("sealing the memfd:");
	return fd;
}

/* The memfd travels as SCM_RIGHTS with one byte of data. */
struct fd_message {
	char byte;
	struct iovec iov;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr m;
};

static void fd_message_init(struct fd_message *f)
{
	memset(f, 0, sizeof *f);
	f->byte = 'm';
	f->iov = (struct iovec){.iov_base = &f->byte, .iov_len = 1};
	f->m = (struct msghdr){.msg_iov = &f->iov, .msg_iovlen = 1, .msg_control = f->c.buf, .msg_controllen = sizeof f->c.buf};
}

static void send_fd(int sock, int fd)
{
	struct fd_message f;
	struct cmsghdr *h;

	fd_message_init(&f);
	h = CMSG_FIRSTHDR(&f.m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof fd);
	if (sendmsg(sock, &f.m, MSG_NOSIGNAL) != 1)
		die("sending the memfd:");
}

static int recv_fd(int sock)
{
	struct fd_message f;
	struct cmsghdr *h;
	int fd;

	fd_message_init(&f);
	if (recvmsg(sock, &f.m, MSG_CMSG_CLOEXEC) != 1)
		die("receiving the memfd:");
	h = CMSG_FIRSTHDR(&f.m);
	if (h == NULL || h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(sizeof(int)))
		die("no memfd in the message");
	memcpy(&fd, CMSG_DATA(h), sizeof fd);
	return fd;
}

int main(int argc, char **argv)
{
	struct opts o;

	bench_init(argc, argv, &o);
	if (!scenario_is(&o, "stream"))
		die("only the stream scenario");
	set_timeouts(SOCK_FD);

	if (role_is(&o, "pub")) {
		int fd = create_memfd(&o);
		struct pool p = map_pool(fd, &o);
		unsigned char *src = new_payload(&o);
		struct sender s;

		send_fd(SOCK_FD, fd);
		sender_init(&s, &o, src);
		for (long k = 0; sender_next(&s); k++) {
			wait_for(state(&p, k), 0);
			memcpy(slot(&p, k), src, (size_t)o.size);
			set_and_wake(state(&p, k), 1);
		}
		print_sender(&s);
	} else if (role_is(&o, "sub")) {
		struct pool p = map_pool(recv_fd(SOCK_FD), &o);
		struct receiver r;
		int done = 0;

		receiver_init(&r, &o);
		for (long k = 0; !done; k++) {
			wait_for(state(&p, k), 1);
			done = receiver_got(&r, slot(&p, k), (size_t)o.size);
			set_and_wake(state(&p, k), 0);
		}
		print_receiver(&r);
	} else {
		die("unknown role %s", o.role);
	}
	return 0;
}
