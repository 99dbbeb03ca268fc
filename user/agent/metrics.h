/* SPDX-License-Identifier: MIT */
/* Prometheus metrics: GET /metrics on the agent's HTTP listener (metrics.listen) serving counters
 * of events by type, services' state and restarts, tracked zombies and the listener's own load. */
#ifndef REVENANT_METRICS_H
#define REVENANT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "agent/httpd.h"

struct metrics;

/* Writes the service lines of the exposition into buf (the supervisor's part). */
typedef size_t (*metrics_services_fn)(void *ctx, char *buf, size_t len);

struct metrics *metrics_open(struct loop *l, const char *listen, char *err, size_t errlen);
void metrics_close(struct metrics *m);
void metrics_set_services(struct metrics *m, metrics_services_fn fn, void *ctx);
/* The HTTP server behind it, for the status page's routes (NULL when m is). */
struct httpd *metrics_httpd(struct metrics *m);

/* Counters, callable whether or not an endpoint is open (m may be NULL). */
void metrics_set_gauge_zombies(uint64_t n);
/* A record of this type (enum rev_event_type) came through the ring buffer. */
void metrics_count_record(uint32_t type);
/* When the kernel keeps the zombie grace: read its count of exited, unreaped processes at each
 * scrape (NULL: the count above). */
void metrics_watch_kernel_grace(uint64_t (*unreaped)(void *ctx), void *ctx);
/* The event log's write failures: failed or short writes, lines lost, lines waiting. */
/* The event log whose write failures the exposition reports. */
struct evlog;
void metrics_watch_log(const struct evlog *lg);

/* Append to buf (len bytes) at offset n; returns the new offset, never past len. */
size_t metrics_appendf(char *buf, size_t len, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The whole exposition text into buf; returns its length. */
size_t metrics_render(struct metrics *m, char *buf, size_t len);

#endif
