/* SPDX-License-Identifier: MIT */
/* Rotating line files (the event log, the services' output): one write(2) per batch of whole
 * lines, so a reader or a crash never sees half a line; rotation into numbered (gzip) segments;
 * event timestamps; and the segment naming that writers and readers (`tail`, `logs`) share. The
 * event log is JSON lines in log.path; what an event holds is lib/events.h's. */
#ifndef REVENANT_LOG_H
#define REVENANT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

struct evlog;
struct rotlog;
struct loop;

/* A file of lines that rotates into numbered (gzip) segments: the event log's and each service's
 * output file. */
struct rotlog_opts {
	const char *path;
	const char *key;     /* the config key naming path, for messages (default "log.path") */
	long long max_bytes; /* rotate before the file would pass this; 0 = never */
	int keep;	     /* rotated segments kept; 0 = a rotation discards the old file */
	bool compress;	     /* gzip rotated segments (in a child process, off the loop) */
	/* A file another user had put in the way (a rotation's .new) was removed: said here, or
	 * on stderr when NULL. Called from inside rotlog_write(). */
	void (*warn)(void *ctx, const char *detail);
	void *warn_ctx;
};

/* Opens (creates) o->path for appending. Its directory is opened once and checked (root's, and
 * writable by others only when sticky); every file is opened relative to it with O_NOFOLLOW,
 * must be a regular file (or /dev/null, which is never rotated), and new ones are made with
 * O_EXCL. Repairs what a crash may have left: a half line at the end, a rotation cut between its
 * two steps, a partial .gz; starts compressing segments a previous run left uncompressed. NULL
 * with errno and a message in err on failure (EPERM, ELOOP, EINVAL: the path is refused as
 * unsafe). */
struct rotlog *rotlog_open(const struct rotlog_opts *o, char *err, size_t errlen);
/* Appends buf, whole lines (each ending in '\n'), one write(2) per file: it rotates first when
 * the lines would pass max_bytes, splitting them between the files at a line end, so a file
 * passes max_bytes only by a single longer line (or while rotations fail: better too big than
 * lost). *written (may be NULL) is how much of buf is in the files, whole lines only: on a short
 * write (disk full) the cut line is removed. 0 or -errno (of the write that failed; -ENOSPC for
 * a space that could not be reserved or a short write that gave no error). */
int rotlog_write(struct rotlog *lg, const char *buf, size_t len, size_t *written);
/* Watch the compressor through a pidfd in l (NULL detaches): see evlog_attach_loop. */
int rotlog_attach_loop(struct rotlog *lg, struct loop *l);
/* Waits for the compressor, compresses what is still queued, closes. Never touches the loop. */
void rotlog_close(struct rotlog *lg);
const char *rotlog_path(const struct rotlog *lg);
/* The path no longer names the open file (removed, renamed, replaced, say by a FIFO): its owner
 * may reopen it, which checks it again as rotlog_open() does. Never true for /dev/null. */
bool rotlog_replaced(const struct rotlog *lg);

struct evlog_opts {
	const char *path;
	long long max_bytes; /* rotate when the file would pass this; 0 = never */
	int keep;	     /* rotated segments kept; 0 = a rotation discards the old file */
	bool compress;	     /* gzip rotated segments (in a child process, off the loop) */
	bool echo;	     /* also print a one-line summary of each event to stderr */
};

/* Opens (creates) o->path as rotlog_open() does: directory checked, files opened relative to it
 * and never through a symlink, a half line or half rotation a crash left repaired. NULL with
 * errno and a message in err on failure (EPERM, ELOOP, EINVAL: the path is refused as unsafe). */
struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen);
/* Serialises and appends obj (one line), rotating first when the line would pass max_bytes; frees
 * obj. Returns 0 or -errno; a failed rotation does not lose the line (it goes to the old file),
 * nor does a failed write (it waits in the queue below: -EAGAIN while earlier lines still wait).
 * lg NULL: obj is freed, 0. */
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
/* Tries once more to write what waits, waits for the compressor, compresses what is still
 * queued, closes. Touches the loop only to cancel its retry timer when still attached. */
void evlog_close(struct evlog *lg);

/* Writes that fail (a full disk) lose nothing silently: each failed or short write is counted
 * and reported on stderr (at most every 10 s); the line is kept in a bounded queue (4096 lines,
 * 1 MiB; what overflows it is counted as lost) and retried whole at the next emit and on a timer
 * with back-off; after recovery the first line is an events_lost with reason "log write failed",
 * then the kept lines in order. */
struct evlog_stats {
	uint64_t write_errors; /* failed or short write(2)s */
	uint64_t lost;	       /* lines dropped */
	size_t queued;	       /* lines waiting now */
};
void evlog_stats(const struct evlog *lg, struct evlog_stats *st);
/* Adds "log": {path, write_errors, lines_lost, lines_queued} to a status object. */
void evlog_add_status(const struct evlog *lg, cJSON *obj);

/* RFC 3339 UTC with microseconds, e.g. 2026-11-27T11:23:33.123456Z, from CLOCK_REALTIME ns. */
void ev_format_ts(char *buf, size_t len, uint64_t real_ns);
/* The inverse, for any RFC 3339 date-time: "2026-11-27T11:23:33Z", fractions of a second up to ns,
 * "Z" or a "+HH:MM"/"-HH:MM" offset. 0 or -EINVAL; -ERANGE before 1970. */
int ev_parse_ts(const char *s, uint64_t *real_ns);
uint64_t ev_mono_to_real_ns(uint64_t mono_ns);

/* A rotated segment of the log at PATH. Numbered ones are PATH.1.gz (newest) .. PATH.N.gz, or
 * PATH.1 .. PATH.N without compression. A pending one, PATH.pending.SEQ, is a rotated file waiting
 * for the compressor: it is newer than every numbered segment, and a higher SEQ is newer. */
struct evseg {
	char *path;
	const char *name; /* the file name: the last component of path */
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
