// SPDX-License-Identifier: MIT
/* The metrics endpoint: GET /metrics on metrics.listen (served by httpd, which the status page
 * shares), the Prometheus text exposition. Counters are process-wide so every module can count
 * without plumbing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/metrics.h"
#include "agent/zcensus.h"
#include "event.h"
#include "lib/events.h"
#include "lib/log.h"
#include "lib/util.h"

#define PAGE (64 * 1024)
#define MAX_PAGE (64 * 1024 * 1024)

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
	struct httpd *http;
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
	if (m && m->http) {
		struct httpd_stats st;

		httpd_stats(m->http, &st);
		n = metrics_appendf(
			buf, len, n,
			"# HELP revenant_http_connections Open connections to metrics.listen.\n"
			"# TYPE revenant_http_connections gauge\n"
			"revenant_http_connections %d\n"
			"# HELP revenant_http_connections_max The cap on those connections.\n"
			"# TYPE revenant_http_connections_max gauge\n"
			"revenant_http_connections_max %d\n"
			"# HELP revenant_http_full_total Times the cap was reached (clients wait).\n"
			"# TYPE revenant_http_full_total counter\n"
			"revenant_http_full_total %llu\n"
			"# HELP revenant_http_shed_total Connections closed at once: no fd left.\n"
			"# TYPE revenant_http_shed_total counter\n"
			"revenant_http_shed_total %llu\n"
			"# HELP revenant_http_timeouts_total Connections closed at their deadline.\n"
			"# TYPE revenant_http_timeouts_total counter\n"
			"revenant_http_timeouts_total %llu\n",
			st.conns, st.max_conns, st.full, st.shed, st.timeouts);
	}
	if (m && m->services && n < len)
		n += m->services(m->services_ctx, buf + n, len - n);
	return n < len ? n : len;
}

/* The exposition grows with the services: render into a buffer doubled until it fits. */
static char *render_all(struct metrics *m, size_t *len)
{
	size_t cap = PAGE;

	for (;;) {
		char *buf = malloc(cap);

		if (!buf)
			return NULL;
		*len = metrics_render(m, buf, cap);
		if (*len < cap - 1 || cap >= MAX_PAGE)
			return buf;
		free(buf);
		cap *= 2;
	}
}

static void on_metrics(void *ctx, struct http_conn *c, const struct http_req *req,
		       const char *body)
{
	struct metrics *m = ctx;
	size_t len;
	char *page = render_all(m, &len);

	(void)req;
	(void)body;
	if (!page) {
		httpd_respondf(c, 500, "text/plain; charset=utf-8", NULL, "out of memory\n");
		return;
	}
	httpd_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, page, len);
	free(page);
}

struct metrics *metrics_open(struct loop *l, const char *listen_at, char *err, size_t errlen)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "cannot serve metrics: out of memory");
		return NULL;
	}
	m->loop = l;
	m->http = httpd_open(l, listen_at, NULL, err, errlen);
	if (!m->http || httpd_route(m->http, "/metrics", HTTP_GET, on_metrics, m)) {
		httpd_close(m->http);
		free(m);
		return NULL;
	}
	return m;
}

struct httpd *metrics_httpd(struct metrics *m)
{
	return m ? m->http : NULL;
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
	httpd_close(m->http);
	free(m);
}
