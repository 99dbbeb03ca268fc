/* SPDX-License-Identifier: MIT */
/* `revenant logs`: a service's output files (log_file, stderr_file) read and followed across
 * their rotations, and the parser of their lines, which `tail --output` shares. */
#ifndef REVENANT_LOGS_H
#define REVENANT_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/logread.h"
#include "lib/config.h"

/* One line of an output file: "<RFC 3339> stdout|stderr F|P <text>" as the agent writes it with
 * log_timestamps, or the raw text without. */
struct outline {
	bool stamped;	  /* the line has the time and stream prefix */
	uint64_t ts_ns;	  /* its time (stamped), 0 otherwise */
	int stream;	  /* OUT_STDOUT, OUT_STDERR, or -1 when nothing says */
	bool partial;	  /* a piece of a line longer than 64 KiB, more follows (P) */
	const char *text; /* into the line given */
	size_t len;
};

/* file_stream: the stream of the file's lines when it holds one stream only, else -1. Never
 * fails: a line without the prefix is raw text. */
void outline_parse(const char *line, size_t len, int file_stream, struct outline *o);

/* What an lr_src reading a service's output file needs (its ctx). */
struct outsrc {
	const char *service;
	int file_stream; /* -1: stdout and stderr share the file */
	int want;	 /* the stream to show, -1 both */
	uint64_t since;	 /* 0: everything */
	bool json;
	bool tail_rows;	  /* `tail --output`: rows and objects of the event timeline */
	uint64_t last_ts; /* a raw line is placed at the time of the stamped line before it */
};
/* The lr_line_fn of such a source. */
void outsrc_line(struct lr_src *s, const char *line, size_t len);

/* The sources of service sc's output (one file, or stdout's and stderr's), filtered to stream
 * want (-1: both): fills ctx[0..*n) and src[0..*n) (at most 2); the caller sets since, json. */
void logs_sources(const struct service_config *sc, int want, struct outsrc *ctx, struct lr_src *src,
		  size_t *n);

int cmd_logs(int argc, char **argv);

#endif
