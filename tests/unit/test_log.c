// SPDX-License-Identifier: MIT
/* Unit tests of the event log (user/log.c) and of its reader (user/tail.c): timestamps both ways,
 * one line per event, JSON encoding, rotation (names, keep, every line exactly once, compression
 * off the caller), crash repair, --since, and the line and segment readers on bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/events.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "cmd/tail.h"

#define S 1000000000ull


/* A line for the writer to write: {"ts", "type"} and whatever the test adds. */
static cJSON *test_obj(const char *type, uint64_t mono_ts_ns)
{
	cJSON *o = cJSON_CreateObject();
	char ts[40];

	ev_format_ts(ts, sizeof(ts), ev_mono_to_real_ns(mono_ts_ns));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", type);
	return o;
}

static char dir[PATH_MAX], logpath[PATH_MAX + 32];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/revenant-test-log-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/events.jsonl", dir);
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static uint64_t real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * S + ts.tv_nsec;
}

static bool exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool exists(const char *fmt, ...)
{
	char p[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	return access(p, F_OK) == 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* The whole (decompressed, with zlib itself rather than the reader under test) content. */
static char *slurp(const char *path, size_t *len)
{
	gzFile gz = gzopen(path, "rb");
	size_t cap = 1 << 16;
	char *buf = malloc(cap);
	int n;

	assert_non_null(gz);
	*len = 0;
	while ((n = gzread(gz, buf + *len, cap - *len - 1)) > 0) {
		*len += n;
		if (cap - *len < 4096)
			buf = realloc(buf, cap *= 2);
	}
	assert_true(n == 0);
	assert_int_equal(gzclose(gz), Z_OK);
	buf[*len] = 0;
	return buf;
}

static struct evlog *open_log(long long max_bytes, int keep, bool compress)
{
	struct evlog_opts o = {
	    .path = logpath, .max_bytes = max_bytes, .keep = keep, .compress = compress};
	char err[512] = "";
	struct evlog *lg = evlog_open(&o, err, sizeof(err));

	if (!lg)
		fail_msg("evlog_open: %s", err);
	return lg;
}

static void emit_seq(struct evlog *lg, int from, int to)
{
	for (int i = from; i < to; i++) {
		cJSON *e = test_obj("test", 0);

		cJSON_AddNumberToObject(e, "seq", i);
		cJSON_AddStringToObject(e, "pad", "some text to make lines longer");
		assert_int_equal(evlog_emit(lg, e), 0);
	}
}

/* Checks every line of the file is a whole event with the next seq (*next < 0: any first);
 * returns the count. */
static int check_seq_file(const char *path, int *next, int *first, bool is_gz)
{
	size_t len;
	char *text = slurp(path, &len), *save = NULL;
	int n = 0;
	int gz_magic;

	{
		FILE *f = fopen(path, "rb");

		assert_non_null(f);
		gz_magic = fgetc(f) == 0x1f && fgetc(f) == 0x8b;
		fclose(f);
	}
	assert_int_equal(gz_magic, is_gz);
	assert_true(len == 0 || text[len - 1] == '\n');
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		cJSON *o = cJSON_Parse(l);
		const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");

		assert_non_null(o);
		assert_true(cJSON_IsNumber(seq));
		if (*next >= 0 && seq->valueint != *next)
			fail_msg("%s: seq %d where %d was due", path, seq->valueint, *next);
		if (*first < 0)
			*first = seq->valueint;
		*next = seq->valueint + 1;
		cJSON_Delete(o);
		n++;
	}
	free(text);
	return n;
}

/* Reads the segments (oldest first) then the live file: every seq once, in order. Returns the
 * first seq seen; *segs the number of segments. */
static int check_all(int total, int *segs, bool gz)
{
	struct evseg *s;
	size_t n;
	int next = -1, first = -1, lines = 0;

	assert_int_equal(evlog_segments(logpath, &s, &n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_false(s[i].pending);
		assert_int_equal(s[i].gz, gz);
		assert_int_equal(s[i].idx, n - i); /* .N .. .1, no gaps */
		lines += check_seq_file(s[i].path, &next, &first, gz);
	}
	lines += check_seq_file(logpath, &next, &first, false);
	assert_int_equal(next, total);
	assert_int_equal(lines, total - first);
	evlog_segments_free(s, n);
	*segs = n;
	assert_false(exists("%s.gz.tmp", logpath));
	assert_false(exists("%s.new", logpath));
	return first;
}

static void ts_format(void **state)
{
	char buf[64];

	(void)state;
	ev_format_ts(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
	ev_format_ts(buf, sizeof(buf), 1795777200ull * S + 123456789);
	assert_string_equal(buf, "2026-11-27T11:00:00.123456Z");
	ev_format_ts(buf, sizeof(buf), 1709251199ull * S + 999999999);
	assert_string_equal(buf, "2024-02-29T23:59:59.999999Z");
}

static void ts_parse(void **state)
{
	static const char *const bad[] = {
	    "",
	    "2026-11-27",
	    "2026-11-27T11:00:00", /* no zone */
	    "2026-11-27T11:00:00Zjunk",
	    "2026-13-01T00:00:00Z",
	    "2023-02-29T00:00:00Z", /* not a leap year */
	    "2026-11-27T24:00:00Z",
	    "2026-11-27T11:60:00Z",
	    "2026-11-27T11:00:00.Z", /* a dot with no digits */
	    "2026-11-27T11:00:00+2:00",
	    "+026-11-27T11:00:00Z",
	    "2026-11-27T11:00:00+02:00 ",
	};
	uint64_t ns;
	char buf[64];

	(void)state;
	assert_int_equal(ev_parse_ts("2026-11-27T11:00:00Z", &ns), 0);
	assert_true(ns == 1795777200ull * S);
	assert_int_equal(ev_parse_ts("2026-11-27t11:00:00.5z", &ns), 0);
	assert_true(ns == 1795777200ull * S + 500000000);
	assert_int_equal(ev_parse_ts("2026-11-27T13:00:00.123456789123+02:00", &ns), 0);
	assert_true(ns == 1795777200ull * S + 123456789);
	assert_int_equal(ev_parse_ts("2026-11-27T06:30:00-04:30", &ns), 0);
	assert_true(ns == 1795777200ull * S);
	assert_int_equal(ev_parse_ts("2024-02-29T23:59:59Z", &ns), 0);
	assert_true(ns == 1709251199ull * S);
	assert_int_equal(ev_parse_ts("1970-01-01T00:00:00Z", &ns), 0);
	assert_true(ns == 0);
	assert_int_equal(ev_parse_ts("1969-12-31T23:59:59Z", &ns), -ERANGE);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ev_parse_ts(bad[i], &ns) != -EINVAL)
			fail_msg("'%s' parsed", bad[i]);
	/* What the writer formats, the reader parses back (to the microsecond). */
	ns = real_now();
	ev_format_ts(buf, sizeof(buf), ns);
	{
		uint64_t back;

		assert_int_equal(ev_parse_ts(buf, &back), 0);
		assert_true(back == ns / 1000 * 1000);
	}
}

static void since_parse(void **state)
{
	uint64_t now = 1795777200ull * S, t;

	(void)state;
	assert_int_equal(tail_parse_since("10m", now, &t), 0);
	assert_true(t == now - 600 * S);
	assert_int_equal(tail_parse_since("2h", now, &t), 0);
	assert_true(t == now - 7200 * S);
	assert_int_equal(tail_parse_since("30s", now, &t), 0);
	assert_true(t == now - 30 * S);
	assert_int_equal(tail_parse_since("1d", now, &t), 0);
	assert_true(t == now - 86400 * S);
	assert_int_equal(tail_parse_since("100000d", now, &t), 0); /* before 1970: everything */
	assert_true(t == 0);
	assert_int_equal(tail_parse_since("2026-11-27T09:00:00Z", now, &t), 0);
	assert_true(t == 1795770000ull * S);
	assert_int_equal(tail_parse_since("99999999999999999999s", now, &t), -ERANGE);
	assert_int_equal(tail_parse_since("999999999999999999d", now, &t), -ERANGE);
	assert_int_equal(tail_parse_since("10", now, &t), -EINVAL);
	assert_int_equal(tail_parse_since("10x", now, &t), -EINVAL);
	assert_int_equal(tail_parse_since("m", now, &t), -EINVAL);
	assert_int_equal(tail_parse_since("-5m", now, &t), -EINVAL);
	assert_int_equal(tail_parse_since("10mm", now, &t), -EINVAL);
	assert_int_equal(tail_parse_since("", now, &t), -EINVAL);
}

static void new_event_fields(void **state)
{
	uint64_t before = real_now(), after, ts;
	struct event ev = {.type = EV_HEALTH};
	cJSON *e;
	const cJSON *t, *s;

	(void)state;
	ev.health.pid = 42;
	ev.health.ok = true;
	e = ev_encode(&ev);
	t = cJSON_GetObjectItemCaseSensitive(e, "type");
	s = cJSON_GetObjectItemCaseSensitive(e, "ts");
	after = real_now();
	assert_string_equal(t->valuestring, "health");
	assert_int_equal(strlen(s->valuestring), strlen("1970-01-01T00:00:00.000000Z"));
	assert_int_equal(ev_parse_ts(s->valuestring, &ts), 0);
	assert_true(ts >= before / 1000 * 1000 && ts <= after);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "service")));
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(e, "pid")->valueint, 42);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ok")));
	cJSON_Delete(e);

	/* A kernel (CLOCK_MONOTONIC) stamp one second ago is a wall-clock time one second ago. */
	ev.ts_ns = mono_ns() - S;
	e = ev_encode(&ev);
	assert_int_equal(ev_parse_ts(cJSON_GetObjectItemCaseSensitive(e, "ts")->valuestring, &ts),
			 0);
	after = real_now();
	assert_true(ts <= after - S + S / 10 && ts >= after - S - S / 10);
	cJSON_Delete(e);
}

static void one_line_per_event_and_encoding(void **state)
{
	static const char *const tricky[] = {
	    "say \"hi\"",
	    "two\nlines",
	    "tab\there",
	    "back\\slash",
	    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
	    "ctl\x01\x1f",
	    "",
	};
	const int n = sizeof(tricky) / sizeof(tricky[0]);
	struct evlog *lg = open_log(0, 5, true);
	size_t len;
	char *text, *line, *save = NULL;
	int i = 0;

	(void)state;
	for (int k = 0; k < n; k++) {
		cJSON *e = test_obj("test", 0);

		cJSON_AddStringToObject(e, "comm", tricky[k]);
		assert_int_equal(evlog_emit(lg, e), 0);
	}
	assert_int_equal(evlog_emit(lg, NULL), -ENOMEM);
	assert_int_equal(evlog_emit(NULL, test_obj("nowhere", 0)), 0);
	evlog_close(lg);

	text = slurp(logpath, &len);
	assert_int_equal(text[len - 1], '\n');
	assert_non_null(strstr(text, "say \\\"hi\\\""));
	assert_non_null(strstr(text, "two\\nlines"));
	assert_non_null(strstr(text, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac")); /* UTF-8 as is */
	assert_non_null(strstr(text, "ctl\\u0001\\u001f"));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		struct evline ev;

		assert_int_equal(evline_parse(line, strlen(line), &ev), 0);
		assert_string_equal(ev.type, "test");
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(ev.obj, "comm")->valuestring,
				    tricky[i]);
		evline_free(&ev);
	}
	assert_int_equal(i, n);
	free(text);
}

/* Segments oldest first, then the live file, as one text. */
static char *slurp_all_segments(size_t *len)
{
	struct evseg *segs;
	size_t n, l;
	char *all = NULL, *t;

	*len = 0;
	assert_int_equal(evlog_segments(logpath, &segs, &n), 0);
	for (size_t i = 0; i <= n; i++) {
		t = slurp(i < n ? segs[i].path : logpath, &l);
		all = realloc(all, *len + l + 1);
		assert_non_null(all);
		memcpy(all + *len, t, l);
		*len += l;
		free(t);
	}
	evlog_segments_free(segs, n);
	return all;
}

struct tapped {
	char *all;
	size_t len;
	int lines;
};

static void tap(void *ctx, const char *line, size_t len)
{
	struct tapped *t = ctx;

	t->all = realloc(t->all, t->len + len + 1);
	assert_non_null(t->all);
	memcpy(t->all + t->len, line, len);
	t->all[t->len + len] = '\n';
	t->len += len + 1;
	t->lines++;
}

/* The tap sees exactly the lines of the file, in order, each once; none after it is removed. */
static void tap_sees_every_line(void **state)
{
	struct evlog *lg = open_log(4096, 5, false);
	struct tapped t = {0};
	size_t len;
	char *text;

	(void)state;
	evlog_set_tap(lg, tap, &t);
	emit_seq(lg, 0, 100); /* rotates a few times on the way */
	evlog_set_tap(lg, NULL, NULL);
	emit_seq(lg, 100, 101);
	evlog_close(lg);
	assert_int_equal(t.lines, 100);
	text = slurp_all_segments(&len);
	assert_true(len > t.len);
	assert_memory_equal(text, t.all, t.len);
	free(text);
	free(t.all);
}

static void rotation_gzip_keeps_every_line_once(void **state)
{
	struct evlog *lg = open_log(400, 1000, true);
	struct loop *l = loop_new();
	int segs;

	(void)state;
	assert_non_null(l);
	assert_int_equal(evlog_attach_loop(lg, l), 0);
	/* Rotations come faster than the compressor: the queue of pending segments is used. */
	emit_seq(lg, 0, 300);
	assert_int_equal(evlog_attach_loop(lg, NULL), 0);
	loop_free(l);
	evlog_close(lg); /* waits for the compressor and finishes the queue */
	assert_int_equal(check_all(300, &segs, true), 0);
	assert_true(segs > 50);
}

/* total lines through a log of 400-byte files keeping `keep` segments: exactly `keep` remain, and
 * the oldest lines went with the segments beyond them. */
static void rotate_past_keep(int total, int keep, bool compress)
{
	struct evlog *lg = open_log(400, keep, compress);
	int segs;

	emit_seq(lg, 0, total);
	evlog_close(lg);
	assert_true(check_all(total, &segs, compress) > 0);
	assert_int_equal(segs, keep);
}

static void rotation_keep_bound(void **state)
{
	struct evlog *lg;
	int segs;

	(void)state;
	rotate_past_keep(100, 3, true);
	assert_false(exists("%s.4.gz", logpath));

	/* A lower keep on the next run drops what lies beyond it. */
	lg = open_log(400, 2, true);
	emit_seq(lg, 100, 110);
	evlog_close(lg);
	check_all(110, &segs, true);
	assert_int_equal(segs, 2);
}

static void rotation_uncompressed(void **state)
{
	(void)state;
	rotate_past_keep(60, 4, false);
	assert_true(exists("%s.1", logpath) && exists("%s.4", logpath));
	assert_false(exists("%s.5", logpath) || exists("%s.1.gz", logpath));
}

static void rotation_keep_zero(void **state)
{
	struct evlog *lg = open_log(400, 0, true);
	struct evseg *s;
	size_t n;
	int segs;

	(void)state;
	emit_seq(lg, 0, 50);
	evlog_close(lg);
	assert_int_equal(evlog_segments(logpath, &s, &n), 0);
	assert_int_equal(n, 0);
	evlog_segments_free(s, n);
	assert_true(check_all(50, &segs, true) > 0);
}

static void rotation_never_splits_a_line(void **state)
{
	struct evlog *lg = open_log(4096, 1000, true);
	char big[3000];
	struct stat st;
	int segs;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 20; i++) {
		cJSON *e = test_obj("test", 0);

		cJSON_AddNumberToObject(e, "seq", i);
		cJSON_AddStringToObject(e, "pad", big);
		assert_int_equal(evlog_emit(lg, e), 0);
		assert_int_equal(stat(logpath, &st), 0);
		assert_true(st.st_size <= 4096); /* one line a file: rotated before each */
	}
	{
		/* A line longer than max_bytes still goes out whole, to a file of its own. */
		char *huge = malloc(8000);
		cJSON *e = test_obj("test", 0);

		memset(huge, 'y', 7999);
		huge[7999] = 0;
		cJSON_AddNumberToObject(e, "seq", 20);
		cJSON_AddStringToObject(e, "pad", huge);
		assert_int_equal(evlog_emit(lg, e), 0);
		free(huge);
	}
	evlog_close(lg);
	assert_int_equal(check_all(21, &segs, true), 0);
	assert_int_equal(segs, 20);
}

static void open_repairs_a_crash(void **state)
{
	char p[PATH_MAX + 64];
	struct evlog *lg;
	size_t len;
	char *text;
	int segs;

	(void)state;
	/* A half line at the end, a rotation cut between link and rename (the live file has a
	 * pending name too), a stale temp file, and a segment a killed compressor left pending. */
	write_file(logpath,
		   "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":3}\n{\"ts\":\"20");
	snprintf(p, sizeof(p), "%s.pending.7", logpath);
	assert_int_equal(link(logpath, p), 0);
	snprintf(p, sizeof(p), "%s.pending.4", logpath);
	write_file(p, "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":0}\n"
		      "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":1}\n");
	snprintf(p, sizeof(p), "%s.pending.5", logpath);
	write_file(p, "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":2}\n");
	snprintf(p, sizeof(p), "%s.gz.tmp", logpath);
	write_file(p, "partial gzip");
	snprintf(p, sizeof(p), "%s.new", logpath);
	write_file(p, "");

	lg = open_log(1 << 20, 5, true);
	text = slurp(logpath, &len);
	assert_string_equal(text,
			    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":3}\n");
	free(text);
	assert_false(exists("%s.pending.7", logpath));
	assert_false(exists("%s.new", logpath));
	emit_seq(lg, 4, 6);
	evlog_close(lg);
	/* pending.4 then pending.5 became .2.gz and .1.gz; nothing is left pending. */
	assert_int_equal(check_all(6, &segs, true), 0);
	assert_int_equal(segs, 2);
}

static void compressor_leaves_a_half_rotation_alone(void **state)
{
	char p[PATH_MAX + 64];
	struct evlog *lg = open_log(1 << 20, 5, true);
	int segs;

	(void)state;
	/* A rotation cut between its link and its rename (the agent killed there) while a
	 * compressor runs on: the pending name is still the live file, and compressing it would put
	 * its lines in a segment and in the live file. */
	emit_seq(lg, 0, 3);
	snprintf(p, sizeof(p), "%s.pending.1", logpath);
	assert_int_equal(link(logpath, p), 0);
	evlog_close(lg); /* compresses what is pending, in-process */
	assert_true(exists("%s.pending.1", logpath));
	assert_false(exists("%s.1.gz", logpath));
	/* The next agent undoes the half rotation. */
	lg = open_log(1 << 20, 5, true);
	emit_seq(lg, 3, 4);
	evlog_close(lg);
	assert_int_equal(check_all(4, &segs, true), 0);
	assert_int_equal(segs, 0);
}

static void queue_beyond_keep_is_dropped_uncompressed(void **state)
{
	char p[PATH_MAX + 64], line[128];
	struct evlog *lg;
	int segs;

	(void)state;
	/* Five rotations the compressor never reached, keep=2: the three oldest would be shifted
	 * out right after their compression, so they are not compressed at all. The oldest is a
	 * dangling link, which could not be: it shows that it is dropped, not compressed. */
	snprintf(p, sizeof(p), "%s.pending.1", logpath);
	assert_int_equal(symlink("/nonexistent", p), 0);
	for (int i = 1; i < 5; i++) {
		snprintf(p, sizeof(p), "%s.pending.%d", logpath, i + 1);
		snprintf(line, sizeof(line),
			 "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"test\",\"seq\":%d}\n", i);
		write_file(p, line);
	}
	lg = open_log(1 << 20, 2, true);
	emit_seq(lg, 5, 6);
	evlog_close(lg);
	assert_int_equal(check_all(6, &segs, true), 3);
	assert_int_equal(segs, 2);
	assert_false(exists("%s.pending.1", logpath));
}

static void segments_order(void **state)
{
	static const char *const names[] = {
	    "1.gz", "2.gz",  "10.gz", "pending.3", "pending.12", "gz.tmp",
	    "new",  "01.gz", "x",     "3.gz.bak",  "pending.",	 "0.gz",
	};
	static const char *const want[] = {"10.gz", "2.gz", "1.gz", "pending.3", "pending.12"};
	char p[PATH_MAX + 64];
	struct evseg *s;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s.%s", logpath, names[i]);
		write_file(p, "");
	}
	snprintf(p, sizeof(p), "%s/other.jsonl.1.gz", dir);
	write_file(p, "");
	assert_int_equal(evlog_segments(logpath, &s, &n), 0);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s.%s", logpath, want[i]);
		assert_string_equal(s[i].path, p);
		assert_int_equal(s[i].pending, i >= 3);
	}
	assert_true(s[0].idx == 10 && s[4].idx == 12);
	evlog_segments_free(s, n);
	assert_int_equal(evlog_segments("/nonexistent-dir/events.jsonl", &s, &n), -ENOENT);
}

static void line_reader_rejects_bad_input(void **state)
{
	static const char *const bad[] = {
	    "",
	    "{",
	    "[]",
	    "{}",
	    "\"text\"",
	    "{\"type\":\"x\"}",
	    "{\"ts\":\"yesterday\",\"type\":\"x\"}",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"\"}",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":1}",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"x\"} trailing",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"x\"}{}",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":null}",
	    "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"x\",",
	};
	const char ok[] =
	    "{\"ts\":\"2026-11-27T11:00:00.5Z\",\"type\":\"port_listen\",\"port\":80}  ";
	const char nul[] = "{\"ts\":\"2026-11-27T11:00:00Z\",\"type\":\"x\"}\0{}";
	struct evline ev;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (evline_parse(bad[i], strlen(bad[i]), &ev) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_null(ev.obj);
	}
	assert_int_equal(evline_parse(nul, sizeof(nul) - 1, &ev), -EINVAL);
	/* The length is what counts, not a terminator: a prefix of a valid line is not one. */
	assert_int_equal(evline_parse(ok, 20, &ev), -EINVAL);
	assert_int_equal(evline_parse(ok, strlen(ok), &ev), 0);
	assert_string_equal(ev.type, "port_listen");
	assert_true(ev.ts_ns == 1795777200ull * S + 500000000);
	evline_free(&ev);
}

struct collect {
	int n;
	size_t lens[8];
	char first[64];
};

static int collect_line(const char *line, size_t len, void *ctx)
{
	struct collect *c = ctx;

	if (c->n < 8)
		c->lens[c->n] = len;
	if (c->n == 0)
		snprintf(c->first, sizeof(c->first), "%.*s", (int)(len < 63 ? len : 63), line);
	c->n++;
	return 0;
}

static int stop_at_second(const char *line, size_t len, void *ctx)
{
	(void)line;
	(void)len;
	return ++*(int *)ctx == 2 ? 7 : 0;
}

static void segment_reader(void **state)
{
	char p[PATH_MAX + 64], err[256];
	struct collect c = {0};
	gzFile gz;
	int fd, count = 0;
	char *big;

	(void)state;
	/* gzip, with an unterminated last line */
	snprintf(p, sizeof(p), "%s.1.gz", logpath);
	gz = gzopen(p, "wb");
	gzputs(gz, "alpha\nbeta\n\ngamma");
	gzclose(gz);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	assert_int_equal(evseg_read(fd, collect_line, &c, err, sizeof(err)), 0);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.first, "alpha");
	assert_true(c.lens[2] == 0 && c.lens[3] == 5);
	/* a callback stops the reading and its value comes back; a second read starts over */
	assert_int_equal(evseg_read(fd, stop_at_second, &count, err, sizeof(err)), 7);
	assert_int_equal(count, 2);
	close(fd);

	/* truncated gzip: the lines before the damage, then -EIO and a message */
	{
		size_t len;
		char *raw;
		FILE *f = fopen(p, "rb");

		raw = malloc(4096);
		len = fread(raw, 1, 4096, f);
		fclose(f);
		f = fopen(p, "wb");
		fwrite(raw, 1, len - 6, f);
		fclose(f);
		free(raw);
	}
	memset(&c, 0, sizeof(c));
	fd = open(p, O_RDONLY | O_CLOEXEC);
	assert_int_equal(evseg_read(fd, collect_line, &c, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "damaged"));
	close(fd);

	/* plain text, and a line over EVLINE_MAX: cut to EVLINE_MAX, the rest dropped */
	big = malloc(EVLINE_MAX + 100);
	memset(big, 'z', EVLINE_MAX + 99);
	memcpy(big, "first\n", 6);
	big[EVLINE_MAX + 50] = '\n';
	big[EVLINE_MAX + 99] = 0;
	write_file(logpath, big);
	free(big);
	memset(&c, 0, sizeof(c));
	fd = open(logpath, O_RDONLY | O_CLOEXEC);
	assert_int_equal(evseg_read(fd, collect_line, &c, err, sizeof(err)), 0);
	close(fd);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.first, "first");
	assert_int_equal(c.lens[1], EVLINE_MAX);
	assert_int_equal(c.lens[2], 48);
}

/* A full disk in miniature: RLIMIT_FSIZE fails a write past a size (a short write at the limit,
 * then EFBIG). No half line stays; each failure is counted; lines are kept (4096 at most, the
 * rest counted as lost) and written whole once writes work, after an events_lost. */
static void write_failures_keep_lines_and_say_so(void **state)
{
	struct evlog *lg = open_log(0, 0, false);
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	struct rlimit old, lim;
	struct evlog_stats st;
	struct stat sb;
	char *text, *save = NULL, *line;
	size_t len;
	int n = 0, next = 0;
	cJSON *e;

	(void)state;
	emit_seq(lg, 0, 5);
	assert_int_equal(stat(logpath, &sb), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = sb.st_size + 40; /* room for part of one line */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (int i = 5; i < 5 + 4200; i++) {
		e = test_obj("test", 0);
		cJSON_AddNumberToObject(e, "seq", i);
		cJSON_AddStringToObject(e, "pad", "some text to make lines longer");
		assert_true(evlog_emit(lg, e) < 0);
	}
	evlog_stats(lg, &st);
	assert_int_equal(st.queued, 4096);
	assert_int_equal(st.lost, 4200 - 4096);
	assert_true(st.write_errors >= 4200);
	/* the short write at the limit was cut: the file is as it was */
	assert_int_equal(stat(logpath, &sb), 0);
	assert_int_equal(sb.st_size, (off_t)lim.rlim_cur - 40);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	emit_seq(lg, 5 + 4200, 5 + 4201); /* the next event writes what waits, then itself */
	evlog_stats(lg, &st);
	assert_int_equal(st.queued, 0);
	evlog_close(lg);
	signal(SIGXFSZ, prev);

	text = slurp(logpath, &len);
	assert_true(len > 0 && text[len - 1] == '\n');
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		cJSON *o = cJSON_Parse(line);
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");

		assert_non_null(o);
		if (n == 5) {
			/* the first line after recovery */
			assert_string_equal(type->valuestring, "events_lost");
			assert_string_equal(
			    cJSON_GetObjectItemCaseSensitive(o, "reason")->valuestring,
			    "log write failed");
			assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "count")->valuedouble,
					 4200 - 4096);
			assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "delayed")->valuedouble,
					 4096);
			assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "error")->valuestring,
					    strerror(EFBIG));
		} else {
			/* every other line in order: 0..4, the 4096 kept, then the new one */
			assert_string_equal(type->valuestring, "test");
			assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "seq")->valuedouble,
					 next);
			next = next == 5 + 4096 - 1 ? 5 + 4200 : next + 1;
		}
		cJSON_Delete(o);
	}
	assert_int_equal(n, 5 + 1 + 4096 + 1);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ts_format),
	    cmocka_unit_test(ts_parse),
	    cmocka_unit_test(since_parse),
	    cmocka_unit_test(new_event_fields),
	    cmocka_unit_test_setup_teardown(one_line_per_event_and_encoding, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(tap_sees_every_line, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(rotation_gzip_keeps_every_line_once, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(rotation_keep_bound, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(rotation_uncompressed, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(rotation_keep_zero, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(rotation_never_splits_a_line, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(open_repairs_a_crash, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(compressor_leaves_a_half_rotation_alone, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(queue_beyond_keep_is_dropped_uncompressed, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(segments_order, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(write_failures_keep_lines_and_say_so, setup_dir,
					    teardown_dir),
	    cmocka_unit_test(line_reader_rejects_bad_input),
	    cmocka_unit_test_setup_teardown(segment_reader, setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
