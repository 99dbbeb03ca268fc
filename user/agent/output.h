/* SPDX-License-Identifier: MIT */
/* The services' output: the agent's ends of each service's stdout and stderr pipes, read in the
 * loop (non-blocking, bounded), split into lines, stamped and appended to the service's rotating
 * files (lib/log's rotlog). Lines a full or failing disk cannot take are dropped and counted, so a
 * service is never blocked on its output for longer than the agent takes to read it. */
#ifndef REVENANT_OUTPUT_H
#define REVENANT_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/config.h"
#include "lib/loop.h"

/* A line longer than this is cut into pieces of this size, each but the last marked partial. */
#define OUT_LINE_MAX 65536

enum out_stream {
	OUT_STDOUT,
	OUT_STDERR,
};

/* ---- lines out of a byte stream (pure) ---- */

/* Called per whole line (without its newline), and per OUT_LINE_MAX piece of a longer one with
 * partial true: the pieces and the final part (partial false) make up the line. */
typedef void (*out_line_fn)(void *ctx, const char *line, size_t len, bool partial);

struct linesplit {
	char buf[OUT_LINE_MAX]; /* the start of a line whose end has not arrived */
	size_t len;
};

void linesplit_feed(struct linesplit *ls, const char *data, size_t n, out_line_fn fn, void *ctx);
/* The stream ended: an unterminated rest is a line of its own. */
void linesplit_finish(struct linesplit *ls, out_line_fn fn, void *ctx);

/* One line as it is stored with log_timestamps: "<RFC 3339 UTC> stdout|stderr F|P <line>\n" —
 * the CRI log format (Kubernetes), so Promtail, Vector and Fluent Bit read it as they are. */
#define OUT_TS_LEN     27 /* 2026-11-27T11:23:33.123456Z */
#define OUT_PREFIX_LEN (OUT_TS_LEN + 1 + 6 + 1 + 1 + 1)
const char *out_stream_name(enum out_stream s);

/* ---- the agent's side ---- */

struct outputs;

/* What the agent is told: a service_warning (lost lines, a cut line, a file that cannot open). */
typedef void (*out_warn_fn)(void *ctx, const char *service, const char *detail);

struct outputs *outputs_new(struct loop *l, bool compress, out_warn_fn warn, void *ctx);
/* Reads what the pipes still hold, writes the partial lines, closes every file. */
void outputs_free(struct outputs *o);

/* The pipes of one spawn: child[] become the child's fds 1 and 2, ours[] stay with the agent. */
struct out_pipes {
	int child[2];
	int ours[2];
};
/* Makes both pipes (O_CLOEXEC; ours non-blocking). 0 or -errno (nothing left open). */
int out_pipes_open(struct out_pipes *p);
/* Before the fork: c's output files, opened at its first start (again when its settings
 * changed). 0, or -errno with why in err: then the service must not get pipes nobody reads. */
int outputs_open(struct outputs *o, const struct service_config *c, char *err, size_t errlen);
/* After the fork: ours[] are taken and read in the loop for service c (main process pid), into
 * its files. The child's ends are the caller's to close. 0 or -errno with what went wrong in
 * warn (the pipes are taken all the same: closing them would kill the service). */
int outputs_attach(struct outputs *o, const struct service_config *c, pid_t pid,
		   struct out_pipes *p, char *warn, size_t warnlen);
void out_pipes_close(struct out_pipes *p);

/* Reads what the pipes of the process pid hold now, so the lines it printed before it died are
 * written before its exit is logged. */
void outputs_drain(struct outputs *o, pid_t pid);

struct out_stats {
	uint64_t lines, lost_bytes, lost_lines, cut_lines;
};
/* What happened to a service's output since the agent started (zeroes when none). */
void outputs_stats(const struct outputs *o, const char *service, struct out_stats *st);

#endif
