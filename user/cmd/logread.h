/* SPDX-License-Identifier: MIT */
/* Reading rotated line files — the event log and the services' output — as `tail` and `logs` do:
 * a segment (gzip or plain) read whole, the last N lines across the live file and its segments,
 * everything from the oldest segment, and following the live file across rotations, for one file
 * or several at once (merged by time). What a line means is the caller's: it parses each line
 * and hands back the text to print and its time. */
#ifndef REVENANT_LOGREAD_H
#define REVENANT_LOGREAD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* A line longer than this is no event of ours: it is reported cut to this length (and then fails
 * to parse), its rest dropped, so a damaged file cannot make a reader hold it all in memory. */
#define EVLINE_MAX (1u << 20)

/* Called per line, without its newline; a nonzero return stops the reading and is returned. */
typedef int (*evseg_line_cb)(const char *line, size_t len, void *ctx);

/* Reads the whole file behind fd from its start, gzip or plain (zlib tells them apart), calling cb
 * per line; an unterminated last line counts as a line. fd stays open. 0, cb's nonzero return, or
 * -EIO (damaged gzip) / -errno with what happened in err; lines before the damage were given. */
int evseg_read(int fd, evseg_line_cb cb, void *ctx, char *err, size_t errlen);

/* Splits a byte stream into lines; a line that arrives in pieces is assembled in buf. */
struct lines {
	char *buf;
	size_t len, cap;
	bool skip; /* inside a line longer than EVLINE_MAX: its rest is dropped */
};

struct lr_src;
struct lr_set;

/* The caller's view of each line of a source (its history once, in order): parse, filter, and
 * hand what to print to lr_emit(). Warnings name s->where and s->lineno. */
typedef void (*lr_line_fn)(struct lr_src *s, const char *line, size_t len);

/* One rotated file (path, path.1.gz, ...) being read. */
struct lr_src {
	const char *path;
	lr_line_fn on_line;
	void *ctx; /* the caller's */
	/* where a line came from, for warnings */
	const char *where;
	size_t lineno;
	/* private */
	struct lr_set *set;
	unsigned idx;
	int fd; /* the live file, -1 until it exists */
	struct stat st;
	struct lines lb;
	char *last; /* its last whole line: where a rotation catch-up resumes */
	size_t last_len, last_cap;
	bool counting; /* a pass that only counts what would be printed */
	size_t counted;
	struct lr_item *items; /* what was emitted, until the backlog goes out */
	size_t n_items, cap_items, start_items;
};

/* The sources of one command and its output: the last `limit` lines of each (limit < 0: every
 * one), merged by time when there are several, then (following) each line as it comes. */
struct lr_set {
	struct lr_src *src;
	size_t n;
	long long limit;
	bool live_out; /* the backlog is out: lines print as they are read */
};

/* Set up src[0..n) (path, on_line, ctx filled in by the caller). */
void lr_init(struct lr_set *set, struct lr_src *src, size_t n, long long limit);
void lr_free(struct lr_set *set);
/* Opens the live file: 0 or -errno (-ENOENT: not there yet; following waits for it). */
int lr_open(struct lr_src *s);
/* The backlog of s: with all, every segment from the oldest; else as many of the newest segments
 * as the last `limit` lines need (counted with on_line); then the live file to its end. */
void lr_read(struct lr_src *s, bool all);
/* What the on_line callback prints for a line: text (malloc'd, newline-terminated; taken) at
 * real time ts_ns. */
void lr_emit(struct lr_src *s, uint64_t ts_ns, char *text);
/* Print the backlog of every source: merged by time, the last `limit` of them. */
void lr_flush(struct lr_set *set);
/* Follow every source until a signal of mask arrives (exit 0) or a directory goes away (1). */
int lr_follow(struct lr_set *set, const sigset_t *mask);
/* The last error of lr_open() as a message to print: what, where, what to do. */
void lr_open_error(const char *path, int err, const char *config_path);

#endif
