/* SPDX-License-Identifier: MIT */
/* `revenant tail`: reads and follows the event log across its rotated (gzip) segments. The event
 * line parser and the row format are here, apart from the command, so a fuzzer can call them. */
#ifndef REVENANT_TAIL_H
#define REVENANT_TAIL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "cmd/logread.h" /* evseg_read, EVLINE_MAX */

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

/* --since: RFC 3339 ("2026-11-27T11:00:00Z") or a time before now_ns ("30s", "10m", "2h", "1d").
 * 0 or -EINVAL / -ERANGE. */
int tail_parse_since(const char *s, uint64_t now_ns, uint64_t *since_ns);

int cmd_tail(int argc, char **argv);

#endif
