// SPDX-License-Identifier: MIT
/* sd_notify without libsystemd: one AF_UNIX datagram per message to $NOTIFY_SOCKET. Owns that
 * socket, the watchdog timer and the last STATUS= text sent (to send only changes). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/notify.h"

#define STATUS_MAX 256

static struct {
	int fd;
	struct sockaddr_un sa;
	socklen_t salen;
	uint64_t watchdog_usec; /* 0: the service manager did not ask for keep-alives */
	struct loop *loop;
	struct loop_timer watchdog;
	notify_status_fn status;
	void *status_ctx;
	char last[STATUS_MAX]; /* the STATUS= text the manager has */
	char stopping[64];     /* why, once STOPPING=1 was sent */
} N = {.fd = -1};

int notify_parse_addr(const char *s, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n;

	if (!s || (s[0] != '/' && s[0] != '@'))
		return s && !strncmp(s, "vsock:", 6) ? -EAFNOSUPPORT : -EINVAL;
	n = strlen(s);
	if (n < 2)
		return -EINVAL;
	if (n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, s, n);
	if (s[0] == '@') {
		/* Abstract: a leading NUL, and the length says where the name ends (no NUL). */
		sa->sun_path[0] = 0;
		*len = offsetof(struct sockaddr_un, sun_path) + n;
	} else {
		*len = offsetof(struct sockaddr_un, sun_path) + n + 1;
	}
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int64_t notify_parse_watchdog(const char *usec, const char *pid, pid_t self)
{
	uint64_t us, p;

	if (!usec)
		return 0;
	if (parse_u64(usec, &us) || us == 0 || us > INT64_MAX)
		return -EINVAL;
	if (pid) {
		if (parse_u64(pid, &p) || p == 0)
			return -EINVAL;
		if (p != (uint64_t)self)
			return 0; /* meant for another process (we were exec'd by a wrapper) */
	}
	return (int64_t)us;
}

static int send_msg(const char *msg)
{
	ssize_t n;

	if (N.fd < 0)
		return -ENOTCONN;
	/* Never block the loop on a busy manager: a lost STATUS= is sent again at the next change,
	 * and READY/STOPPING go out when its queue is empty anyway. */
	n = sendto(N.fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&N.sa,
		   N.salen);
	return n < 0 ? -errno : 0;
}

int notify_init(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	int64_t wd =
	    notify_parse_watchdog(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid());
	int rc = 0;

	notify_close();
	memset(&N, 0, sizeof(N));
	N.fd = -1;
	if (sock) {
		rc = notify_parse_addr(sock, &N.sa, &N.salen);
		if (rc)
			fprintf(stderr,
				"revenant: NOTIFY_SOCKET=%s: %s (not a path or @abstract name); "
				"the service manager will not hear from the agent\n",
				sock, strerror(-rc));
		else if ((N.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
			rc = -errno;
	}
	if (wd < 0)
		fprintf(stderr,
			"revenant: WATCHDOG_USEC=%s: not a positive number; no keep-alives\n",
			getenv("WATCHDOG_USEC"));
	N.watchdog_usec = wd > 0 && N.fd >= 0 ? (uint64_t)wd : 0;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return rc;
}

static void status_text(char *buf, size_t len)
{
	char now[STATUS_MAX - 80] = "";

	if (N.status)
		N.status(N.status_ctx, now, sizeof(now));
	if (N.stopping[0])
		snprintf(buf, len, "stopping (%s): %s", N.stopping, now);
	else
		snprintf(buf, len, "%s", now);
}

static void before_wait(struct loop *l, void *ctx)
{
	char text[STATUS_MAX], msg[STATUS_MAX + 8];

	(void)l;
	(void)ctx;
	status_text(text, sizeof(text));
	if (!strcmp(text, N.last))
		return;
	snprintf(msg, sizeof(msg), "STATUS=%s", text);
	if (send_msg(msg) == 0)
		snprintf(N.last, sizeof(N.last), "%s", text);
}

static void on_watchdog(struct loop *l, void *ctx)
{
	(void)ctx;
	send_msg("WATCHDOG=1");
	/* Half the interval, as sd_watchdog_enabled(3) advises: one late wake-up is not fatal. */
	loop_timer_after_ms(l, &N.watchdog, N.watchdog_usec / 2000 ? N.watchdog_usec / 2000 : 1);
}

void notify_ready(struct loop *l, notify_status_fn fn, void *ctx)
{
	char text[STATUS_MAX], msg[STATUS_MAX + 32];

	if (N.fd < 0)
		return;
	N.loop = l;
	N.status = fn;
	N.status_ctx = ctx;
	status_text(text, sizeof(text));
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", text);
	if (send_msg(msg) == 0)
		snprintf(N.last, sizeof(N.last), "%s", text);
	loop_set_before_wait(l, before_wait, NULL);
	if (N.watchdog_usec) {
		loop_timer_init(&N.watchdog, on_watchdog, NULL);
		on_watchdog(l, NULL);
	}
}

void notify_stopping(const char *why)
{
	char text[STATUS_MAX], msg[STATUS_MAX + 32];

	if (N.fd < 0 || N.stopping[0])
		return;
	snprintf(N.stopping, sizeof(N.stopping), "%s", why && *why ? why : "exiting");
	status_text(text, sizeof(text));
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", text);
	if (send_msg(msg) == 0)
		snprintf(N.last, sizeof(N.last), "%s", text);
}

void notify_close(void)
{
	if (N.loop) {
		loop_set_before_wait(N.loop, NULL, NULL);
		if (N.watchdog_usec)
			loop_timer_cancel(N.loop, &N.watchdog);
		N.loop = NULL;
	}
	if (N.fd >= 0)
		close(N.fd);
	N.fd = -1;
}
