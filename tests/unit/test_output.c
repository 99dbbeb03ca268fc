// SPDX-License-Identifier: MIT
/* Service output as pure logic: the line splitter and cutter (whole lines across reads, the
 * 64 KiB cut marked partial, the rest at the end of a stream), the reader's parse of the stored
 * line format, a rotating file keeping its batches under max_bytes at line ends, and what an exit
 * cause means for service_exit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cause.h"
#include "agent/output.h"
#include "cmd/logs.h"
#include "lib/log.h"

#define MAXREC 64

struct rec {
	size_t n;
	size_t len[MAXREC];
	bool partial[MAXREC];
	char first[MAXREC], last[MAXREC];
	char text[MAXREC][32];
};

static void collect(void *ctx, const char *line, size_t len, bool partial)
{
	struct rec *r = ctx;

	assert_true(r->n < MAXREC);
	r->len[r->n] = len;
	r->partial[r->n] = partial;
	r->first[r->n] = len ? line[0] : 0;
	r->last[r->n] = len ? line[len - 1] : 0;
	snprintf(r->text[r->n], sizeof(r->text[0]), "%.*s", (int)(len < 31 ? len : 31), line);
	r->n++;
}

static struct linesplit *new_split(void)
{
	struct linesplit *ls = calloc(1, sizeof(*ls));

	assert_non_null(ls);
	return ls;
}

static void whole_lines_across_reads(void **state)
{
	struct linesplit *ls = new_split();
	struct rec r = {0};

	(void)state;
	linesplit_feed(ls, "one\ntw", 6, collect, &r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[0], "one");
	linesplit_feed(ls, "o\n\nthr", 6, collect, &r);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.text[1], "two");
	assert_int_equal(r.len[2], 0); /* an empty line is a line */
	linesplit_feed(ls, "ee", 2, collect, &r);
	assert_int_equal(r.n, 3);
	linesplit_finish(ls, collect, &r); /* the stream ended: the rest is a line */
	assert_int_equal(r.n, 4);
	assert_string_equal(r.text[3], "three");
	assert_false(r.partial[3]);
	linesplit_finish(ls, collect, &r); /* nothing left */
	assert_int_equal(r.n, 4);
	free(ls);
}

/* Exactly OUT_LINE_MAX bytes and its newline is a whole line; one byte more is cut. */
static void cut_at_64k_and_marked(void **state)
{
	struct linesplit *ls = new_split();
	size_t big = 200 * 1024;
	char *buf = malloc(big + 2);
	struct rec r = {0};

	(void)state;
	memset(buf, 'a', OUT_LINE_MAX);
	buf[OUT_LINE_MAX] = '\n';
	linesplit_feed(ls, buf, OUT_LINE_MAX + 1, collect, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.len[0], OUT_LINE_MAX);
	assert_false(r.partial[0]);

	/* 200 KiB in pieces of odd sizes: three cut pieces, then the rest whole */
	memset(buf, 'b', big);
	buf[0] = 'B';
	buf[big - 1] = 'E';
	buf[big] = '\n';
	r.n = 0;
	for (size_t off = 0, step = 1000; off < big + 1; off += step, step = step * 3 % 70001 + 1)
		linesplit_feed(ls, buf + off, off + step > big + 1 ? big + 1 - off : step, collect,
			       &r);
	assert_int_equal(r.n, 4);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r.len[i], OUT_LINE_MAX);
		assert_true(r.partial[i]);
	}
	assert_int_equal(r.first[0], 'B');
	assert_false(r.partial[3]);
	assert_int_equal(r.len[3], big - 3 * OUT_LINE_MAX);
	assert_int_equal(r.last[3], 'E');

	/* a line cut while buffered: the buffer's bytes come first */
	r.n = 0;
	linesplit_feed(ls, "xy", 2, collect, &r);
	memset(buf, 'c', OUT_LINE_MAX);
	linesplit_feed(ls, buf, OUT_LINE_MAX, collect, &r);
	assert_int_equal(r.n, 1);
	assert_true(r.partial[0]);
	assert_int_equal(r.first[0], 'x');
	assert_int_equal(r.len[0], OUT_LINE_MAX);
	linesplit_finish(ls, collect, &r);
	assert_int_equal(r.len[1], 2); /* "cc": the two that did not fit */
	free(buf);
	free(ls);
}

static void stored_lines_parse_back(void **state)
{
	const char *a = "2026-11-27T11:23:33.123456Z stderr P boom";
	const char *raw = "2026-11-27 not ours";
	struct outline o;

	(void)state;
	assert_int_equal(OUT_PREFIX_LEN, strlen("2026-11-27T11:23:33.123456Z stdout F "));
	outline_parse(a, strlen(a), -1, &o);
	assert_true(o.stamped && o.partial);
	assert_int_equal(o.stream, OUT_STDERR);
	assert_int_equal(o.len, 4);
	assert_memory_equal(o.text, "boom", 4);
	assert_int_equal(o.ts_ns, 1795778613123456000ull);
	/* anything else is raw text: the file's stream, no time */
	outline_parse(raw, strlen(raw), OUT_STDOUT, &o);
	assert_false(o.stamped);
	assert_int_equal(o.stream, OUT_STDOUT);
	assert_int_equal(o.len, strlen(raw));
	outline_parse("2026-11-27T11:23:33.123456Z stdin  F x", 38, -1, &o);
	assert_false(o.stamped);
	outline_parse("2026-11-27T11:23:33.123456Z stdout X x", 38, -1, &o);
	assert_false(o.stamped);
	outline_parse("2026-13-27T11:23:33.123456Z stdout F x", 38, -1, &o);
	assert_false(o.stamped);
	outline_parse("2026-11-27T11:23:33.123456Z stdout F ", 37, -1, &o);
	assert_true(o.stamped); /* an empty line */
	assert_int_equal(o.len, 0);
}

/* A batch of lines goes into the file until max_bytes, the rest into the next one, split at a
 * line end; a line longer than max_bytes gets a file of its own. */
static void batches_split_at_line_ends(void **state)
{
	char dir[] = "/tmp/revenant-rotlog-XXXXXX", path[256], seg[300], err[256];
	struct rotlog_opts o = {.max_bytes = 4096, .keep = 10, .compress = false};
	char batch[6000], big[5000];
	struct rotlog *lg;
	struct stat st;
	size_t written;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/out.log", dir);
	o.path = path;
	lg = rotlog_open(&o, err, sizeof(err));
	assert_non_null(lg);
	/* 60 lines of 100 bytes: 40 fit (4000), 20 go to the next file */
	for (int i = 0; i < 60; i++) {
		memset(batch + i * 100, 'a' + i % 26, 99);
		batch[i * 100 + 99] = '\n';
	}
	assert_int_equal(rotlog_write(lg, batch, 6000, &written), 0);
	assert_int_equal(written, 6000);
	snprintf(seg, sizeof(seg), "%s.1", path);
	assert_int_equal(stat(seg, &st), 0);
	assert_int_equal(st.st_size, 4000);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 2000);
	/* a line longer than the limit: the current file rotates, it is written whole */
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	assert_int_equal(rotlog_write(lg, big, sizeof(big), &written), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, sizeof(big));
	snprintf(seg, sizeof(seg), "%s.2", path);
	assert_int_equal(stat(seg, &st), 0); /* the 2000 moved down */
	rotlog_close(lg);
	for (int k = 1; k <= 3; k++) {
		snprintf(seg, sizeof(seg), "%s.%d", path, k);
		unlink(seg);
	}
	unlink(path);
	rmdir(dir);
}

static void causes_become_killed_by(void **state)
{
	struct exit_cause c = {
	    .sig = SIGKILL, .sender_pid = 77, .comm = "bash", .sender_uid = 1000};
	struct ev_service_exit e;

	(void)state;
	cause_describe(&c, SIGKILL, 99, &e);
	assert_true(e.killed_by.known);
	assert_int_equal(e.killed_by.pid, 77);
	assert_string_equal(e.killed_by.comm, "bash");
	assert_int_equal(e.killed_by.uid, 1000);
	assert_false(e.killed_by.agent || e.killed_by.kernel || e.oom || e.core_dumped);
	/* from the agent itself */
	cause_describe(&c, SIGKILL, 77, &e);
	assert_true(e.killed_by.agent);
	/* died of another signal than the one recorded: not known, not guessed */
	cause_describe(&c, SIGSEGV | 0x80, 99, &e);
	assert_false(e.killed_by.known);
	assert_true(e.core_dumped);
	/* exited with a code: nobody killed it, even if the OOM killer had marked it */
	c.oom = true;
	cause_describe(&c, 0, 99, &e);
	assert_false(e.killed_by.known || e.oom);
	/* the OOM killer from interrupt context: no process to name */
	c = (struct exit_cause){.sig = SIGKILL, .kernel = true, .oom = true};
	cause_describe(&c, SIGKILL, 99, &e);
	assert_true(e.killed_by.known && e.killed_by.kernel && e.oom);
	assert_int_equal(e.killed_by.pid, 0);
	assert_null(e.killed_by.comm);
	/* nothing recorded */
	memset(&c, 0, sizeof(c));
	cause_describe(&c, SIGTERM, 99, &e);
	assert_false(e.killed_by.known);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(whole_lines_across_reads),
	    cmocka_unit_test(cut_at_64k_and_marked),
	    cmocka_unit_test(stored_lines_parse_back),
	    cmocka_unit_test(batches_split_at_line_ends),
	    cmocka_unit_test(causes_become_killed_by),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
