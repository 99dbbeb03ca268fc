// SPDX-License-Identifier: MIT
/* bench/spawner: the process factory of bench/storm and bench/latency. Small on purpose, so that a
 * fork and an exit cost little and the storm measures the agent, not the factory.
 *
 *   spawner stamp
 *       write CLOCK_REALTIME (ns, decimal, newline) to stdout and _exit(0): a child whose exit path
 *       is short, for bench/latency.
 *   spawner storm RATE SECONDS LATE_EVERY HOLD_MS vfork|fork
 *       make RATE children per second for SECONDS; each _exit(0)s at once and is reaped at once,
 *       except every LATE_EVERY-th, which stays a zombie for HOLD_MS before it is reaped. Prints
 *       "late PID" per late child as it is made, then "made N", "late_total N", "failed N",
 *       "spawn_ns N" (the making phase) and "elapsed_ns N" (until the last late child is reaped). vfork is the default of bench/storm: on the 2-core VMs a fork() and the
 *       exit of its copied address space cost ~1 ms, a vfork() child ~30-50 us, and the agent
 *       sees the same two kernel records (exit, free) either way.
 *   spawner socks ROUNDS COLLIDE_EVERY
 *       the socket storm of bench/bpfcost, on 127.0.0.1 with ports the kernel picks: per round a
 *       TCP socket bind()s, listen()s and closes, a UDP socket bind()s and closes, and one
 *       sendmsg() without ancillary data goes over a socketpair (we own a listener all along,
 *       so the agent's sendmsg probe takes its owner path); every COLLIDE_EVERY-th round (0:
 *       never) a bind() to our held port fails with EADDRINUSE. Prints "rounds N",
 *       "collisions N", "failed N", "elapsed_ns N".
 *
 * Build: make -C bench   (or: gcc -O2 -Wall -Wextra -o bench/spawner bench/spawner.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define MAX_LATE 65536

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int stamp(void)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)now_ns(CLOCK_REALTIME));

	if (write(1, buf, n) != n)
		_exit(1);
	_exit(0);
}

struct late {
	pid_t pid;
	uint64_t reap_at;
};

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000000ull, .tv_nsec = t % 1000000000ull};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* The child only calls setpgid and _exit, both plain syscalls: safe after vfork. */
static pid_t spawn(int use_vfork, int is_late)
{
	pid_t pid = use_vfork ? vfork() : fork();

	if (pid == 0) {
		/* A late child leaves our process group so waitpid(0) skips it. */
		if (is_late)
			setpgid(0, 0);
		_exit(0);
	}
	return pid;
}

static int storm(long rate, long seconds, long late_every, long hold_ms, int use_vfork)
{
	static struct late late[MAX_LATE]; /* a ring: late children in order of reap time */
	size_t lhead = 0, llen = 0;
	uint64_t start = now_ns(CLOCK_MONOTONIC), end = start + (uint64_t)seconds * 1000000000ull;
	uint64_t hold = (uint64_t)hold_ms * 1000000ull, made = 0, n_late = 0, failed = 0, now;
	uint64_t spawn_end = 0;

	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	for (;;) {
		now = now_ns(CLOCK_MONOTONIC);
		if (now < end) {
			uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9) + 1;

			/* Catch up in bounded bursts so reaping is never starved for long. */
			for (int burst = 0; made < due && burst < 256; burst++) {
				int is_late = late_every > 0 && (made + 1) % late_every == 0 &&
					      llen < MAX_LATE;
				pid_t pid = spawn(use_vfork, is_late);

				if (pid < 0) {
					failed++;
					if (errno == EAGAIN)
						break;
					continue;
				}
				made++;
				if (is_late) {
					setpgid(pid, pid); /* whichever runs first; the other is harmless */
					/* Hold from now, not from the start of the burst: under CPU
					 * pressure we may have been descheduled in between. */
					late[(lhead + llen) % MAX_LATE] = (struct late){
						.pid = pid, .reap_at = now_ns(CLOCK_MONOTONIC) + hold};
					llen++;
					n_late++;
					printf("late %d\n", pid);
				}
			}
		}
		/* Everyone still in our group is a prompt child: reap whatever has exited. */
		while (waitpid(0, NULL, WNOHANG) > 0)
			;
		now = now_ns(CLOCK_MONOTONIC);
		while (llen && late[lhead].reap_at <= now) {
			waitpid(late[lhead].pid, NULL, 0);
			lhead = (lhead + 1) % MAX_LATE;
			llen--;
		}
		if (now >= end) {
			if (!spawn_end)
				spawn_end = now;
			if (!llen)
				break;
			sleep_until(late[lhead].reap_at);
			continue;
		}
		if (made >= (uint64_t)((double)(now - start) * rate / 1e9) + 1) {
			/* Ahead of schedule: sleep until the next child is due (or 1 ms at most). */
			uint64_t next = start + (uint64_t)((double)made * 1e9 / rate);

			if (next > now + 1000000)
				next = now + 1000000;
			sleep_until(next);
		}
	}
	while (waitpid(-1, NULL, 0) > 0)
		;
	printf("made %llu\nlate_total %llu\nfailed %llu\nspawn_ns %llu\nelapsed_ns %llu\n",
	       (unsigned long long)made, (unsigned long long)n_late, (unsigned long long)failed,
	       (unsigned long long)(spawn_end - start),
	       (unsigned long long)(now_ns(CLOCK_MONOTONIC) - start));
	fflush(stdout);
	return 0;
}

static int bind_any(int type, struct sockaddr_in *a)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)a, sizeof(*a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int socks(long rounds, long collide_every)
{
	struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in held_at = any;
	socklen_t len = sizeof(held_at);
	uint64_t start = now_ns(CLOCK_MONOTONIC), failed = 0, collisions = 0;
	int held = bind_any(SOCK_STREAM, &any), pair[2];
	char byte = 'x', sink[64];

	if (held < 0 || listen(held, 1) || getsockname(held, (struct sockaddr *)&held_at, &len) ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair)) {
		perror("spawner socks: setting up");
		return 1;
	}
	for (long r = 0; r < rounds; r++) {
		int t = bind_any(SOCK_STREAM, &any), u = bind_any(SOCK_DGRAM, &any);
		struct iovec iov = {.iov_base = &byte, .iov_len = 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

		if (t < 0 || listen(t, 1) || u < 0)
			failed++;
		if (t >= 0)
			close(t);
		if (u >= 0)
			close(u);
		if (sendmsg(pair[0], &m, 0) != 1 || recv(pair[1], sink, sizeof(sink), 0) != 1)
			failed++;
		if (collide_every && r % collide_every == 0) {
			int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

			if (c >= 0 && bind(c, (struct sockaddr *)&held_at, sizeof(held_at)) &&
			    errno == EADDRINUSE)
				collisions++;
			if (c >= 0)
				close(c);
		}
	}
	printf("rounds %ld\ncollisions %llu\nfailed %llu\nelapsed_ns %llu\n", rounds,
	       (unsigned long long)collisions, (unsigned long long)failed,
	       (unsigned long long)(now_ns(CLOCK_MONOTONIC) - start));
	fflush(stdout);
	close(held);
	return 0;
}

static long arg(const char *s, long lo, long hi, const char *what)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || *e || v < lo || v > hi) {
		fprintf(stderr, "spawner: %s must be %ld..%ld, got '%s'\n", what, lo, hi, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "stamp"))
		return stamp();
	if (argc == 7 && !strcmp(argv[1], "storm") &&
	    (!strcmp(argv[6], "vfork") || !strcmp(argv[6], "fork"))) {
		signal(SIGCHLD, SIG_DFL);
		return storm(arg(argv[2], 1, 1000000, "RATE"), arg(argv[3], 1, 3600, "SECONDS"),
			     arg(argv[4], 0, 1000000, "LATE_EVERY"),
			     arg(argv[5], 0, 600000, "HOLD_MS"), !strcmp(argv[6], "vfork"));
	}
	if (argc == 4 && !strcmp(argv[1], "socks"))
		return socks(arg(argv[2], 1, 10000000, "ROUNDS"),
			     arg(argv[3], 0, 10000000, "COLLIDE_EVERY"));
	fprintf(stderr, "usage: spawner stamp\n"
			"       spawner storm RATE SECONDS LATE_EVERY HOLD_MS vfork|fork\n"
			"       spawner socks ROUNDS COLLIDE_EVERY\n");
	return 2;
}
