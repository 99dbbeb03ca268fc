// SPDX-License-Identifier: MIT
/* libFuzzer target: the log readers `revenant tail` and `logs` use on files anyone with write
 * access to the log directory (or a service, through its output) could have shaped: the input as
 * one line (evline_parse, outline_parse and the output rows and JSON objects), as a whole segment
 * file, gzip or plain (evseg_read, through a memfd), each event as a table row
 * (tail_format_row), and as a --since argument. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/log.h"
#include "cmd/logs.h"
#include "cmd/tail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_line(const char *line, size_t len, void *ctx)
{
	struct evline ev;

	if (len > EVLINE_MAX)
		abort(); /* the reader promised to cut long lines */
	if (evline_parse(line, len, &ev) == 0) {
		char *row = tail_format_row(&ev);

		if (!ev.type || !ev.type[0] || !row || row[strlen(row) - 1] != '\n')
			abort();
		for (unsigned char *p = (unsigned char *)row; *p; p++)
			if ((*p < 0x20 && *p != '\n') || *p == 0x7f ||
			    (*p == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0))
				abort(); /* nothing from a log line may drive the terminal */
		*(size_t *)ctx += strlen(row);
		free(row);
		evline_free(&ev);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1; /* one memfd for the whole run: no fd per input */
	struct evline ev;
	char err[256], since[65];
	size_t types = 0;
	uint64_t t;

	if (evline_parse((const char *)data, size, &ev) == 0)
		evline_free(&ev);

	{
		const char *line = (const char *)data;
		struct outline o;
		struct outsrc ctx = {.service = "svc", .file_stream = -1, .want = -1};
		struct lr_src src = {.path = "x", .on_line = outsrc_line, .ctx = &ctx};
		struct lr_set set;

		outline_parse(line, size, -1, &o);
		if (o.text < line || o.text + o.len != line + size)
			abort(); /* the text is the line's tail, never outside it */
		lr_init(&set, &src, 1, 0); /* limit 0: formatted, then dropped */
		for (int mode = 0; mode < 4; mode++) {
			ctx.json = mode & 1;
			ctx.tail_rows = mode & 2;
			outsrc_line(&src, line, size);
		}
		lr_free(&set);
	}

	if (fd < 0)
		fd = memfd_create("segment", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size)
		evseg_read(fd, on_line, &types, err, sizeof(err));

	memcpy(since, data, size < 64 ? size : 64);
	since[size < 64 ? size : 64] = 0;
	tail_parse_since(since, 1795777200ull * 1000000000ull, &t);
	return 0;
}
