/* SPDX-License-Identifier: MIT */
/* `revenant tail`: reads and follows the event log across its rotated (gzip) segments. The line
 * reader and the segment reader are here too, apart from the command, so a fuzzer can call them. */
#ifndef REVENANT_TAIL_H
#define REVENANT_TAIL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

/* A line longer than this is no event of ours: it is reported cut to this length (and then fails
 * to parse), its rest dropped, so a damaged file cannot make a reader hold it all in memory. */
#define EVLINE_MAX (1u << 20)

/* One line of the event log, parsed. */
struct evline {
	cJSON *obj;	  /* the whole event; owned */
	const char *type; /* obj's "type", never empty */
	uint64_t ts_ns;	  /* obj's "ts" as CLOCK_REALTIME ns */
};

/* line need not be NUL-terminated and holds no newline. 0, or -EINVAL when the line is not one
 * JSON object with a string "type" and an RFC 3339 "ts" (ev is then empty). */
int evline_parse(const char *line, size_t len, struct evline *ev);
void evline_free(struct evline *ev);

/* The table row `revenant tail` prints for ev: time, type, the salient fields as key=value, with
 * control bytes of names replaced; newline-terminated, malloc'd (NULL: out of memory). */
char *tail_format_row(const struct evline *ev);

/* Called per line, without its newline; a nonzero return stops the reading and is returned. */
typedef int (*evseg_line_cb)(const char *line, size_t len, void *ctx);

/* Reads the whole file behind fd from its start, gzip or plain (zlib tells them apart), calling cb
 * per line; an unterminated last line counts as a line. fd stays open. 0, cb's nonzero return, or
 * -EIO (damaged gzip) / -errno with what happened in err; lines before the damage were given. */
int evseg_read(int fd, evseg_line_cb cb, void *ctx, char *err, size_t errlen);

/* --since: RFC 3339 ("2026-11-27T11:00:00Z") or a time before now_ns ("30s", "10m", "2h", "1d").
 * 0 or -EINVAL / -ERANGE. */
int tail_parse_since(const char *s, uint64_t now_ns, uint64_t *since_ns);

int cmd_tail(int argc, char **argv);

#endif
