/* SPDX-License-Identifier: MIT */
/* The event log: JSON lines appended to log.path, one write(2) per line, so a reader or a crash
 * never sees half a line. Also the helpers every module uses to build an event object. */
#ifndef REVENANT_LOG_H
#define REVENANT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>

struct evlog;

struct evlog_opts {
	const char *path;
	long long max_bytes; /* rotate when the file would pass this; 0 = never */
	int keep;	     /* rotated segments kept */
	bool compress;	     /* gzip rotated segments */
	bool echo;	     /* also print a one-line summary of each event to stderr */
};

struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen);
/* Serialises and appends obj (one line), then frees it. Returns 0 or -errno. */
int evlog_emit(struct evlog *lg, cJSON *obj);
/* Finishes background work (compression) and closes. */
void evlog_close(struct evlog *lg);
/* Called from the loop when the background compressor may have finished. */
int evlog_poll_fd(struct evlog *lg);
void evlog_on_child(struct evlog *lg);

/* A new event {"ts": ..., "type": type}. ts_ns is CLOCK_MONOTONIC (as the kernel stamps events);
 * 0 means now. */
cJSON *ev_new(const char *type, uint64_t mono_ts_ns);
/* RFC 3339 UTC with microseconds, e.g. 2026-11-27T11:23:33.123456Z, from CLOCK_REALTIME ns. */
void ev_format_ts(char *buf, size_t len, uint64_t real_ns);
uint64_t ev_mono_to_real_ns(uint64_t mono_ns);

void ev_add_str(cJSON *o, const char *k, const char *v); /* NULL v: JSON null */
void ev_add_num(cJSON *o, const char *k, double v);
void ev_add_bool(cJSON *o, const char *k, bool v);

#endif
