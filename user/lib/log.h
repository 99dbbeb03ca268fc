/* SPDX-License-Identifier: MIT */
/* The event log: JSON lines appended to log.path, one write(2) per line, so a reader or a crash
 * never sees half a line; rotation into numbered (gzip) segments; the helpers every module uses to
 * build an event object; and the segment naming that writer and reader (`revenant tail`) share. */
#ifndef REVENANT_LOG_H
#define REVENANT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

struct evlog;
struct loop;

struct evlog_opts {
	const char *path;
	long long max_bytes; /* rotate when the file would pass this; 0 = never */
	int keep;	     /* rotated segments kept; 0 = a rotation discards the old file */
	bool compress;	     /* gzip rotated segments (in a child process, off the loop) */
	bool echo;	     /* also print a one-line summary of each event to stderr */
};

/* Opens (creates) o->path for appending. Repairs what a crash may have left: a half line at the
 * end of the file, a rotation cut between its two steps, a partial .gz. Starts compressing
 * segments a previous run left uncompressed. NULL with a message in err on failure. */
struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen);
/* Serialises and appends obj (one line), rotating first when the line would pass max_bytes; frees
 * obj. Returns 0 or -errno; a failed rotation does not lose the line (it goes to the old file). */
int evlog_emit(struct evlog *lg, cJSON *obj);
/* Lets the log watch its compressor through a pidfd in l, so the next queued segment starts as
 * soon as one is done. NULL detaches (needed only when the loop is freed before the log).
 * Without a loop the compressor is still checked at each rotation and at close. 0 or -errno. */
int evlog_attach_loop(struct evlog *lg, struct loop *l);
/* Calls fn(ctx, line, len) for each line emitted from now on (the JSON object, without its
 * newline; not NUL-terminated), right after it was written to the file (written or not: the tap
 * sees every event). One tap; NULL fn removes it. The status page's live stream uses it. */
typedef void (*evlog_tap_fn)(void *ctx, const char *line, size_t len);
void evlog_set_tap(struct evlog *lg, evlog_tap_fn fn, void *ctx);
/* Waits for the compressor, compresses what is still queued, closes. Never touches the loop. */
void evlog_close(struct evlog *lg);

/* A new event {"ts": ..., "type": type}. ts_ns is CLOCK_MONOTONIC (as the kernel stamps events);
 * 0 means now. */
cJSON *ev_new(const char *type, uint64_t mono_ts_ns);
/* RFC 3339 UTC with microseconds, e.g. 2026-11-27T11:23:33.123456Z, from CLOCK_REALTIME ns. */
void ev_format_ts(char *buf, size_t len, uint64_t real_ns);
/* The inverse, for any RFC 3339 date-time: "2026-11-27T11:23:33Z", fractions of a second up to ns,
 * "Z" or a "+HH:MM"/"-HH:MM" offset. 0 or -EINVAL; -ERANGE before 1970. */
int ev_parse_ts(const char *s, uint64_t *real_ns);
uint64_t ev_mono_to_real_ns(uint64_t mono_ns);

void ev_add_str(cJSON *o, const char *k, const char *v); /* NULL v: JSON null */
void ev_add_num(cJSON *o, const char *k, double v);
void ev_add_bool(cJSON *o, const char *k, bool v);

/* A rotated segment of the log at PATH. Numbered ones are PATH.1.gz (newest) .. PATH.N.gz, or
 * PATH.1 .. PATH.N without compression. A pending one, PATH.pending.SEQ, is a rotated file waiting
 * for the compressor: it is newer than every numbered segment, and a higher SEQ is newer. */
struct evseg {
	char *path;
	unsigned long long idx; /* N of PATH.N[.gz], or SEQ of PATH.pending.SEQ */
	bool pending;
	bool gz;
};

/* The segments of the log at path, oldest first: numbered from the highest N, then pending from
 * the lowest SEQ. Temporary files of a rotation in progress are not segments. 0 or -errno. */
int evlog_segments(const char *path, struct evseg **segs, size_t *n);
void evlog_segments_free(struct evseg *segs, size_t n);
/* The directory that holds the log at path and its segments ("." or "/" when that is all). */
void evlog_dir(const char *path, char *buf, size_t len);

#endif
