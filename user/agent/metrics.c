// SPDX-License-Identifier: MIT
/* The metrics endpoint: accepts on metrics.listen, reads one request, answers the Prometheus text
 * exposition and closes. Counters are process-wide so every module can count without plumbing. */
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/metrics.h"
#include "agent/zcensus.h"
#include "event.h"
#include "lib/events.h"
#include "lib/log.h"
#include "lib/util.h"

#define PAGE (64 * 1024)

static struct {
	uint64_t zombies;
	uint64_t (*zombies_live)(void *ctx); /* the kernel's count, when it keeps the grace */
	void *zombies_ctx;
	uint64_t records[REV_EV_ZOMBIE + 1]; /* ring-buffer records by type (event.h) */
	const struct evlog *log;
} counters;

static const char *const record_names[] = {
	[REV_EV_EXIT] = "exit",		  [REV_EV_REAP] = "reap",
	[REV_EV_LISTEN] = "listen",	  [REV_EV_RELEASE] = "release",
	[REV_EV_COLLISION] = "collision", [REV_EV_ZOMBIE] = "zombie",
};
_Static_assert(ARRAY_SIZE(record_names) == ARRAY_SIZE(counters.records), "a name per record");

struct metrics {
	struct loop *loop;
	int fd;
	metrics_services_fn services;
	void *services_ctx;
};

void metrics_set_gauge_zombies(uint64_t n)
{
	counters.zombies = n;
}

void metrics_count_record(uint32_t type)
{
	if (type < ARRAY_SIZE(counters.records))
		counters.records[type]++;
}

void metrics_watch_kernel_grace(uint64_t (*unreaped)(void *ctx), void *ctx)
{
	counters.zombies_live = unreaped;
	counters.zombies_ctx = ctx;
}

static uint64_t gauge_zombies(void)
{
	return counters.zombies_live ? counters.zombies_live(counters.zombies_ctx) : counters.zombies;
}

void metrics_watch_log(const struct evlog *lg)
{
	counters.log = lg;
}

size_t metrics_appendf(char *buf, size_t len, size_t n, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (n >= len)
		return len;
	va_start(ap, fmt);
	w = vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
	if (w < 0)
		return n;
	return n + (size_t)w < len ? n + (size_t)w : len;
}

size_t metrics_render(struct metrics *m, char *buf, size_t len)
{
	struct evlog_stats ls = {0};
	size_t n = 0;

	if (counters.log)
		evlog_stats(counters.log, &ls);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_events_total Events written to the event log, by type.\n"
			    "# TYPE revenant_events_total counter\n");
	/* Every type is there from the start, at 0: a counter that appears only with its first
	 * event hides that first increase from rate() and increase(). */
	for (int t = 0; t < EV_NTYPES; t++)
		n = metrics_appendf(buf, len, n, "revenant_events_total{type=\"%s\"} %llu\n",
				    ev_type_name(t), (unsigned long long)ev_count(t));
	n = metrics_appendf(
		buf, len, n,
		"# HELP revenant_exited_unreaped Exited processes not yet reaped (zombie candidates).\n"
		"# TYPE revenant_exited_unreaped gauge\n"
		"revenant_exited_unreaped %llu\n",
		(unsigned long long)gauge_zombies());
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_kernel_records_total Records read from the kernel's ring "
			    "buffer, by type.\n"
			    "# TYPE revenant_kernel_records_total counter\n");
	for (size_t t = 1; t < ARRAY_SIZE(counters.records); t++)
		n = metrics_appendf(buf, len, n, "revenant_kernel_records_total{type=\"%s\"} %llu\n",
				    record_names[t], (unsigned long long)counters.records[t]);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_loop_wakeups_total Times the agent's event loop woke up.\n"
			    "# TYPE revenant_loop_wakeups_total counter\n"
			    "revenant_loop_wakeups_total %llu\n",
			    (unsigned long long)loop_wakeups(m ? m->loop : NULL));
	n = metrics_appendf(
		buf, len, n,
		"# HELP revenant_log_write_errors_total Failed or short writes of the event log.\n"
		"# TYPE revenant_log_write_errors_total counter\n"
		"revenant_log_write_errors_total %llu\n"
		"# HELP revenant_log_lines_lost_total Event log lines dropped (write queue full).\n"
		"# TYPE revenant_log_lines_lost_total counter\n"
		"revenant_log_lines_lost_total %llu\n"
		"# HELP revenant_log_lines_queued Event log lines waiting for a write to succeed.\n"
		"# TYPE revenant_log_lines_queued gauge\n"
		"revenant_log_lines_queued %llu\n",
		(unsigned long long)ls.write_errors, (unsigned long long)ls.lost,
		(unsigned long long)ls.queued);
	if (n < len)
		n += zcensus_metrics(buf + n, len - n);
	if (m && m->services && n < len)
		n += m->services(m->services_ctx, buf + n, len - n);
	return n < len ? n : len;
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct metrics *m = ctx;
	char req[2048], *body, head[256];
	ssize_t r = recv(fd, req, sizeof(req) - 1, MSG_DONTWAIT);
	size_t blen;
	int hl;

	(void)events;
	if (r < 0 && errno == EAGAIN)
		return; /* wait for the request line */
	loop_del_fd(l, fd);
	body = malloc(PAGE);
	if (r > 0 && body) {
		req[r] = 0;
		if (!strncmp(req, "GET /metrics", 12) || !strncmp(req, "GET / ", 6)) {
			blen = metrics_render(m, body, PAGE);
			hl = snprintf(head, sizeof(head),
				      "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
				      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
				      blen);
		} else {
			blen = snprintf(body, PAGE, "only GET /metrics here\n");
			hl = snprintf(head, sizeof(head),
				      "HTTP/1.0 404 Not Found\r\nContent-Length: %zu\r\n\r\n", blen);
		}
		/* Small answers on loopback: a short send just loses this scrape, never the loop. */
		if (send(fd, head, hl, MSG_NOSIGNAL | MSG_DONTWAIT) == hl)
			send(fd, body, blen, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	free(body);
	close(fd);
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *ctx)
{
	(void)events;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (c < 0)
			return;
		if (loop_add_fd(l, c, EPOLLIN, on_conn, ctx))
			close(c);
	}
}

struct metrics *metrics_open(struct loop *l, const char *listen_at, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char host[256], *colon;
	struct metrics *m;
	int one = 1, rc;

	snprintf(host, sizeof(host), "%s", listen_at);
	colon = strrchr(host, ':');
	if (!colon) {
		snprintf(err, errlen, "metrics.listen %s is not host:port", listen_at);
		return NULL;
	}
	*colon = 0;
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "metrics.listen %s: %s", listen_at, gai_strerror(rc));
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "cannot serve metrics: out of memory");
		return NULL;
	}
	m->loop = l;
	m->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (m->fd < 0 || bind(m->fd, ai->ai_addr, ai->ai_addrlen) || listen(m->fd, 16) ||
	    loop_add_fd(l, m->fd, EPOLLIN, on_accept, m)) {
		snprintf(err, errlen, "cannot serve metrics on %s: %s (change or empty metrics.listen)",
			 listen_at, strerror(errno));
		if (m->fd >= 0)
			close(m->fd);
		free(m);
		m = NULL;
	}
	freeaddrinfo(ai);
	return m;
}

void metrics_set_services(struct metrics *m, metrics_services_fn fn, void *ctx)
{
	if (!m)
		return;
	m->services = fn;
	m->services_ctx = ctx;
}

void metrics_close(struct metrics *m)
{
	if (!m)
		return;
	loop_del_fd(m->loop, m->fd);
	close(m->fd);
	free(m);
}
