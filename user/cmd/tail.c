// SPDX-License-Identifier: MIT
/* `revenant tail`: the last events of the log, every event of every segment (--all), or the live
 * log followed across rotations (-f). Needs read permission on the log, not the agent or root.
 * Owns the reading side of the log format: the line reader and the (gzip) segment reader. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cmd/cli.h"
#include "lib/log.h"
#include "cmd/tail.h"
#include "lib/events.h"

#define READ_CHUNK	65536
#define BAD_LINES_SHOWN 10   /* a damaged file warns this often, then once with the count */
#define SNAP_TRIES	1000 /* consistent listings attempted while the compressor renames */

/* ---- the line reader ---- */

int evline_parse(const char *line, size_t len, struct evline *ev)
{
	const char *end = NULL;
	const cJSON *type, *ts;

	memset(ev, 0, sizeof(*ev));
	if (!len)
		return -EINVAL;
	ev->obj = cJSON_ParseWithLengthOpts(line, len, &end, false);
	if (!ev->obj)
		return -EINVAL;
	while (end && end < line + len && isspace((unsigned char)*end))
		end++;
	type = cJSON_GetObjectItemCaseSensitive(ev->obj, "type");
	ts = cJSON_GetObjectItemCaseSensitive(ev->obj, "ts");
	if (end != line + len || !cJSON_IsObject(ev->obj) || !cJSON_IsString(type) ||
	    !type->valuestring[0] || !cJSON_IsString(ts) ||
	    ev_parse_ts(ts->valuestring, &ev->ts_ns)) {
		evline_free(ev);
		return -EINVAL;
	}
	ev->type = type->valuestring;
	return 0;
}

void evline_free(struct evline *ev)
{
	cJSON_Delete(ev->obj);
	memset(ev, 0, sizeof(*ev));
}

/* Splits a byte stream into lines; a line that arrives in pieces is assembled in buf. */
struct lines {
	char *buf;
	size_t len, cap;
	bool skip; /* inside a line longer than EVLINE_MAX: its rest is dropped */
};

static int lines_push(struct lines *lb, const char *p, size_t n)
{
	if (lb->len + n > lb->cap) {
		size_t cap = lb->cap ? lb->cap : 4096;
		char *b;

		while (cap < lb->len + n)
			cap *= 2;
		b = realloc(lb->buf, cap);
		if (!b)
			return -ENOMEM;
		lb->buf = b;
		lb->cap = cap;
	}
	memcpy(lb->buf + lb->len, p, n);
	lb->len += n;
	return 0;
}

static int lines_feed(struct lines *lb, const char *data, size_t n, evseg_line_cb cb, void *ctx)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;
		int r = 0;

		if (lb->skip) {
			/* dropping the rest of an overlong line */
		} else if (lb->len + take > EVLINE_MAX) {
			r = lines_push(lb, data, EVLINE_MAX - lb->len);
			if (!r)
				r = cb(lb->buf, lb->len, ctx);
			lb->len = 0;
			lb->skip = true;
		} else if (nl && !lb->len) {
			r = cb(data, take, ctx); /* the usual case: a whole line in the chunk */
		} else {
			r = lines_push(lb, data, take);
			if (!r && nl) {
				r = cb(lb->buf, lb->len, ctx);
				lb->len = 0;
			}
		}
		if (!nl)
			return r;
		lb->skip = false;
		data += take + 1;
		n -= take + 1;
		if (r)
			return r;
	}
	return 0;
}

/* The unterminated rest, as a line (a finished file has no more to come). */
static int lines_finish(struct lines *lb, evseg_line_cb cb, void *ctx)
{
	int r = 0;

	if (!lb->skip && lb->len)
		r = cb(lb->buf, lb->len, ctx);
	lb->len = 0;
	lb->skip = false;
	return r;
}

int evseg_read(int fd, evseg_line_cb cb, void *ctx, char *err, size_t errlen)
{
	struct lines lb = {0};
	const char *msg;
	char *buf = NULL;
	gzFile gz = NULL;
	int dfd, n, ret = 0, zerr = Z_OK;

	if (lseek(fd, 0, SEEK_SET) < 0 || (dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	gz = gzdopen(dfd, "rb"); /* owns dfd from here */
	buf = malloc(READ_CHUNK);
	if (!gz || !buf) {
		if (!gz)
			close(dfd);
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	while ((n = gzread(gz, buf, READ_CHUNK)) > 0)
		if ((ret = lines_feed(&lb, buf, n, cb, ctx)))
			goto out;
	/* A truncated gzip reads as a short EOF: only gzerror() tells it from a whole one. */
	msg = gzerror(gz, &zerr);
	if (n < 0 || zerr != Z_OK) {
		ret = zerr == Z_ERRNO ? -errno : -EIO;
		if (zerr == Z_ERRNO || !msg || !*msg)
			msg = zerr == Z_ERRNO ? strerror(errno) : "read error";
		snprintf(err, errlen, "damaged (%s)", msg);
		goto out;
	}
	ret = lines_finish(&lb, cb, ctx);
out:
	if (gz)
		gzclose(gz);
	free(buf);
	free(lb.buf);
	return ret;
}

int tail_parse_since(const char *s, uint64_t now_ns, uint64_t *since_ns)
{
	static const struct {
		char unit;
		uint64_t ns;
	} units[] = {
	    {'s', 1000000000ull},
	    {'m', 60000000000ull},
	    {'h', 3600000000000ull},
	    {'d', 86400000000000ull},
	};
	unsigned long long v = 0;
	const char *p = s;
	int ret = ev_parse_ts(s, since_ns);

	if (ret != -EINVAL)
		return ret;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*p - '0');
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (p[0] != units[i].unit || p[1])
			continue;
		if (v > UINT64_MAX / units[i].ns)
			return -ERANGE;
		v *= units[i].ns;
		*since_ns = v < now_ns ? now_ns - v : 0;
		return 0;
	}
	return -EINVAL;
}

/* ---- the command ---- */

struct tail {
	/* options */
	const char *cfg_path;
	bool json, all, follow;
	long long limit; /* the last N events; -1: all */
	char **types;
	size_t n_types;
	uint64_t since; /* 0: no --since */
	/* what is being read, for warnings */
	const char *path;
	const char *where;
	size_t lineno, bad;
	/* the last N accepted events until the backlog is out; then each goes out as read */
	char **ring;
	size_t ring_start, ring_count;
	bool live_out;
	/* the live file */
	int fd;
	struct stat st;
	struct lines lb;
	char *last; /* its last whole line, printed or not: where a rotation catch-up resumes */
	size_t last_len, last_cap;
};

/* Length of the valid UTF-8 sequence at s that is no control character (C0, DEL, C1), else 0. */
static int printable_utf8(const unsigned char *s)
{
	static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
	unsigned cp;
	int n;

	if (s[0] < 0x80)
		n = 1;
	else if ((s[0] & 0xe0) == 0xc0)
		n = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4;
	else
		return 0;
	cp = n == 1 ? s[0] : s[0] & (0x7f >> n);
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp > 0x10ffff || cp < min_cp[n] ||
	    (cp >= 0xd800 && cp < 0xe000))
		return 0;
	return n;
}

/* Names come from processes (comm, addresses) and the file from anyone who could write it: no
 * control character, not even a C1 one in UTF-8 (U+009B is a CSI), reaches the terminal. */
static void put_clean(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int n;

	while (*p) {
		n = printable_utf8(p);
		if (n)
			fwrite(p, 1, n, f);
		else
			fputc('?', f);
		p += n ? n : 1;
	}
}

static void put_value(FILE *f, const char *name, const cJSON *v)
{
	fputc(' ', f);
	put_clean(f, name); /* a type this build does not know: its names come from the file */
	fputc('=', f);
	if (cJSON_IsString(v))
		put_clean(f, v->valuestring);
	else if (cJSON_IsBool(v))
		fputs(cJSON_IsTrue(v) ? "true" : "false", f);
	else if (cJSON_IsNumber(v) && fabs(v->valuedouble) < 1e15 &&
		 v->valuedouble == (double)(long long)v->valuedouble)
		fprintf(f, "%lld", (long long)v->valuedouble); /* in range: no UB cast */
	else if (cJSON_IsNumber(v))
		fprintf(f, "%g", v->valuedouble);
	else
		fputs("...", f);
}

/* The salient fields in the order of the event's schema (lib/events.c): what a reader scans,
 * without the ones marked quiet there. A type this build does not know shows every field. */
char *tail_format_row(const struct evline *ev)
{
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ev->obj, "ts");
	const struct ev_schema *sc = ev_schema(ev_type_of(ev->type));
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (!f)
		return NULL;
	fprintf(f, "%-27s  ", ts->valuestring);
	put_clean(f, ev->type);
	fprintf(f, "%*s", strlen(ev->type) < 16 ? (int)(16 - strlen(ev->type)) : 1, "");
	for (size_t i = 0; sc && i < sc->n_fields; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev->obj, sc->fields[i].name);

		if (v && !cJSON_IsNull(v) && !(sc->fields[i].flags & EVF_QUIET))
			put_value(f, sc->fields[i].name, v);
	}
	for (const cJSON *v = sc ? NULL : ev->obj->child; v; v = v->next)
		if (v->string && strcmp(v->string, "ts") && strcmp(v->string, "type") &&
		    !cJSON_IsNull(v))
			put_value(f, v->string, v);
	fputc('\n', f);
	if (fclose(f)) {
		free(s);
		return NULL;
	}
	return s;
}

static void out(struct tail *t, char *s)
{
	if (t->live_out || t->limit < 0) {
		fputs(s, stdout);
		free(s);
		return;
	}
	if (!t->limit) {
		free(s);
		return;
	}
	if (t->ring_count == (size_t)t->limit) {
		free(t->ring[t->ring_start]);
		t->ring[t->ring_start] = s;
		t->ring_start = (t->ring_start + 1) % t->ring_count;
	} else {
		t->ring[(t->ring_start + t->ring_count++) % t->limit] = s;
	}
}

static void flush_backlog(struct tail *t)
{
	for (size_t i = 0; i < t->ring_count; i++) {
		size_t k = (t->ring_start + i) % t->ring_count;

		fputs(t->ring[k], stdout);
		free(t->ring[k]);
	}
	t->ring_count = t->ring_start = 0;
	t->live_out = true;
	fflush(stdout);
}

static bool wanted(const struct tail *t, const struct evline *ev)
{
	if (t->since && ev->ts_ns < t->since)
		return false;
	if (!t->n_types)
		return true;
	for (size_t i = 0; i < t->n_types; i++)
		if (!strcmp(t->types[i], ev->type))
			return true;
	return false;
}

/* One line of the log: invalid ones are warned about and skipped in both output modes, so --json
 * output is always valid JSON lines. */
static void on_line(struct tail *t, const char *line, size_t len)
{
	struct evline ev;
	char *s = NULL;

	if (evline_parse(line, len, &ev)) {
		if (++t->bad <= BAD_LINES_SHOWN)
			cli_err("warning: %s:%zu: not an event (a damaged line?), skipped",
				t->where, t->lineno);
		return;
	}
	if (wanted(t, &ev)) {
		if (t->json && (s = malloc(len + 2))) {
			memcpy(s, line, len);
			s[len] = '\n';
			s[len + 1] = 0;
		} else if (!t->json) {
			s = tail_format_row(&ev);
		}
		if (s)
			out(t, s);
	}
	evline_free(&ev);
}

static bool same_line(const char *a, size_t alen, const char *b, size_t blen)
{
	return a && alen == blen && !memcmp(a, b, alen);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* The first whole line of the live file (NULL: none yet), read without moving its offset. */
static char *first_line(int fd, size_t *len)
{
	char *buf = malloc(READ_CHUNK), *nl = NULL, *b;
	size_t have = 0, cap = READ_CHUNK;
	ssize_t n;

	while (buf && !nl && have < EVLINE_MAX) {
		if (have == cap) {
			b = realloc(buf, cap * 2);
			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
		n = pread(fd, buf + have, cap - have, have);
		if (n <= 0)
			break;
		nl = memchr(buf + have, '\n', n);
		have += n;
	}
	if (!nl) {
		free(buf);
		return NULL;
	}
	*len = nl - buf;
	return buf;
}

/* A consistent view of the rotated segments: every one opened, then listed again unchanged. The
 * compressor renames segments while it works; a listing cut by its renames is taken again. */
struct snap {
	struct evseg *segs;
	size_t n;
	int *fds;
	struct stat *st;
};

static void snap_free(struct snap *s)
{
	for (size_t i = 0; s->fds && i < s->n; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	evlog_segments_free(s->segs, s->n);
	free(s->fds);
	free(s->st);
	memset(s, 0, sizeof(*s));
}

static bool snap_still(const char *path, const struct snap *s)
{
	struct evseg *again;
	struct stat st;
	size_t n;
	bool same;

	if (evlog_segments(path, &again, &n))
		return false;
	same = n == s->n;
	for (size_t i = 0; same && i < n; i++)
		same = !strcmp(again[i].path, s->segs[i].path) && !stat(again[i].path, &st) &&
		       same_file(&st, &s->st[i]);
	evlog_segments_free(again, n);
	return same;
}

static int snap_take(const char *path, struct snap *s)
{
	int ret = 0;

	for (int tries = 0; tries < SNAP_TRIES; tries++) {
		bool ok = true;

		ret = evlog_segments(path, &s->segs, &s->n);
		if (ret)
			return ret;
		s->fds = malloc((s->n + 1) * sizeof(*s->fds));
		s->st = malloc((s->n + 1) * sizeof(*s->st));
		if (!s->fds || !s->st) {
			snap_free(s);
			return -ENOMEM;
		}
		for (size_t i = 0; i < s->n; i++)
			s->fds[i] = -1;
		for (size_t i = 0; ok && i < s->n; i++) {
			s->fds[i] = open(s->segs[i].path, O_RDONLY | O_CLOEXEC);
			if (s->fds[i] < 0 && errno != ENOENT) {
				ret = -errno;
				cli_err("cannot read %s: %s", s->segs[i].path, strerror(-ret));
				snap_free(s);
				return ret;
			}
			ok = s->fds[i] >= 0 && !fstat(s->fds[i], &s->st[i]);
		}
		if (ok && snap_still(path, s))
			return 0;
		snap_free(s);
	}
	return -EAGAIN;
}

/* Reading segments: from the start (--all), or after the line a follower last saw. */
struct replay {
	struct tail *t;
	const char *after; /* skip through this line first */
	size_t after_len;
	bool skipping, found;
	char *stop; /* the live file's first line: the live fd takes over there */
	size_t stop_len;
	bool stopped;
};

static int find_after(const char *line, size_t len, void *ctx)
{
	struct replay *r = ctx;

	r->found = same_line(r->after, r->after_len, line, len);
	return r->found;
}

static int replay_line(const char *line, size_t len, void *ctx)
{
	struct replay *r = ctx;

	r->t->lineno++;
	if (r->skipping) {
		r->skipping = !same_line(r->after, r->after_len, line, len);
		return 0;
	}
	if (same_line(r->stop, r->stop_len, line, len)) {
		r->stopped = true;
		return 1;
	}
	on_line(r->t, line, len);
	return 0;
}

/* The segments' lines in order, up to where the live file (live_fd) begins. With `after` (the file
 * a follower was reading, and its last line), only what came after it: the files rotated in
 * between, which a follower that was slower than two rotations never saw under log.path. */
static void replay(struct tail *t, const struct stat *after, const char *after_line,
		   size_t after_len, int live_fd)
{
	struct replay r = {.t = t, .after = after_line, .after_len = after_len};
	struct stat live = {0};
	struct snap s = {0};
	size_t start = 0, i;
	char err[256];
	int ret;

	ret = snap_take(t->path, &s);
	if (ret) {
		cli_err("warning: cannot list the segments of %s: %s", t->path, strerror(-ret));
		return;
	}
	if (live_fd >= 0 && !fstat(live_fd, &live))
		r.stop = first_line(live_fd, &r.stop_len);
	if (after) {
		for (start = s.n, i = s.n; i-- > 0;) {
			if (same_file(&s.st[i], after)) {
				start = i + 1;
				break;
			}
			if (after_line &&
			    evseg_read(s.fds[i], find_after, &r, err, sizeof(err)) > 0) {
				start = i;
				r.skipping = true;
				break;
			}
		}
		if (i == (size_t)-1 && s.n && after_line)
			cli_err(
			    "warning: %s was rotated faster than it could be followed and the "
			    "lines in between are no longer in any segment; some may be missing",
			    t->path);
	}
	for (i = start; i < s.n && !r.stopped; i++) {
		if (live_fd >= 0 && same_file(&s.st[i], &live))
			break;
		t->where = s.segs[i].path;
		t->lineno = 0;
		ret = evseg_read(s.fds[i], replay_line, &r, err, sizeof(err));
		if (ret < 0)
			cli_err("warning: %s: %s; the rest of this segment is skipped",
				s.segs[i].path, err);
	}
	t->where = t->path;
	free(r.stop);
	snap_free(&s);
}

static int live_line(const char *line, size_t len, void *ctx)
{
	struct tail *t = ctx;

	if (len > t->last_cap) {
		char *b = realloc(t->last, len);

		if (!b)
			return -ENOMEM;
		t->last = b;
		t->last_cap = len;
	}
	memcpy(t->last, line, len);
	t->last_len = len;
	t->lineno++;
	on_line(t, line, len);
	return 0;
}

/* Reads the live file from where it was left to its current end. */
static int read_live(struct tail *t)
{
	char buf[READ_CHUNK];
	ssize_t n;
	int ret;

	while ((n = read(t->fd, buf, sizeof(buf))) > 0)
		if ((ret = lines_feed(&t->lb, buf, n, live_line, t)))
			return ret;
	return n < 0 ? -errno : 0;
}

static int open_file(const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd >= 0 && fstat(fd, st)) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* log.path changed (or appeared): the old file is finished, because the agent writes to the new
 * one only after renaming it over log.path; read it to its end, then what was rotated in between,
 * then switch. Truncation in place (someone else's copytruncate) starts the file over. */
static void follow_check(struct tail *t)
{
	struct stat st;
	int fd;

	if (t->fd >= 0)
		read_live(t);
	if (stat(t->path, &st))
		return; /* between someone's unlink and create: the create wakes us */
	if (t->fd >= 0 && same_file(&st, &t->st)) {
		if (st.st_size < lseek(t->fd, 0, SEEK_CUR)) {
			lseek(t->fd, 0, SEEK_SET);
			t->lb.len = 0;
			t->lineno = 0;
			read_live(t);
		}
		return;
	}
	fd = open_file(t->path, &st);
	if (fd < 0)
		return;
	if (t->fd >= 0) {
		read_live(t);
		lines_finish(&t->lb, live_line, t);
		/* The old fd stays open meanwhile, so its inode number cannot be reused. */
		replay(t, &t->st, t->last_len ? t->last : NULL, t->last_len, fd);
		close(t->fd);
	}
	t->fd = fd;
	t->st = st;
	t->where = t->path;
	t->lineno = 0;
	t->last_len = 0;
	read_live(t);
}

/* Whether an inotify batch concerns log.path or its segments. */
static int drain_inotify(int ifd, const char *base)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	size_t blen = strlen(base);
	bool relevant = false;
	ssize_t n;

	while ((n = read(ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;

			if (e->mask & IN_IGNORED)
				return -ENOENT; /* the directory itself went away */
			if ((e->mask & IN_Q_OVERFLOW) || (e->len && !strncmp(e->name, base, blen)))
				relevant = true;
			p += sizeof(*e) + e->len;
		}
	}
	return relevant;
}

static int follow(struct tail *t, const sigset_t *mask)
{
	const char *slash = strrchr(t->path, '/');
	char dir[PATH_MAX];
	struct pollfd p[2];
	int ifd, sfd, ret = EXIT_OK, r;

	evlog_dir(t->path, dir, sizeof(dir));
	sfd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sfd < 0 || ifd < 0 ||
	    inotify_add_watch(
		ifd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
		cli_err("cannot watch %s: %s (fs.inotify.max_user_watches or "
			"max_user_instances may be exhausted)",
			dir, strerror(errno));
		ret = EXIT_FAILED;
		goto out;
	}
	/* Anything that happened before the watch existed. */
	follow_check(t);
	p[0] = (struct pollfd){.fd = ifd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
	for (;;) {
		fflush(stdout);
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			cli_err("poll: %s", strerror(errno));
			ret = EXIT_FAILED;
			break;
		}
		if (p[1].revents)
			break; /* SIGINT or SIGTERM: a normal end of following */
		r = drain_inotify(ifd, slash ? slash + 1 : t->path);
		if (r < 0) {
			cli_err("%s was removed; nothing more to follow", dir);
			ret = EXIT_FAILED;
			break;
		}
		if (r)
			follow_check(t);
	}
out:
	fflush(stdout);
	if (sfd >= 0)
		close(sfd);
	if (ifd >= 0)
		close(ifd);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: revenant tail [-c FILE] [-f] [-n N] [--all] [--type T,...] [--since TIME]\n"
	    "                     [--json]\n"
	    "\n"
	    "Print the last events of the event log (log.path of the config), as a table or\n"
	    "as the JSON lines stored. Needs read permission on the log, not the agent.\n"
	    "\n"
	    "  -c, --config FILE   configuration (default: the running agent's log, else %s,\n"
	    "                      else %s)\n"
	    "  -n, --lines N       the last N events (default 10; with --all: every one)\n"
	    "  -a, --all           every event of every rotated segment (.N.gz .. .1.gz), then\n"
	    "                      of the live file: oldest first, each line once\n"
	    "  -f, --follow        then print events as they are written, across rotations,\n"
	    "                      until SIGINT or SIGTERM (exit 0)\n"
	    "  -t, --type T,...    only events of these types (e.g. zombie,port_collision)\n"
	    "  -s, --since TIME    only events at or after TIME: RFC 3339\n"
	    "                      (2026-11-27T11:00:00Z) or a time ago (30s, 10m, 2h, 1d)\n"
	    "      --json          the JSON lines exactly as stored\n"
	    "  -h, --help          this help\n"
	    "\n"
	    "A line that is not a JSON event (a damaged file) is skipped with a warning on\n"
	    "stderr, in both output modes: --json output is always valid JSON lines.\n",
	    CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
}

static int add_types(struct tail *t, const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	char **v;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		v = realloc(t->types, (t->n_types + 1) * sizeof(*v));
		if (!v || !(s = strdup(s))) {
			if (v)
				t->types = v;
			ret = -ENOMEM;
			break;
		}
		t->types = v;
		t->types[t->n_types++] = s;
	}
	free(copy);
	return ret;
}

static int parse_args(struct tail *t, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"lines", required_argument, NULL, 'n'},
	    {"all", no_argument, NULL, 'a'},
	    {"follow", no_argument, NULL, 'f'},
	    {"type", required_argument, NULL, 't'},
	    {"since", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct timespec now;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:n:aft:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			t->cfg_path = optarg;
			break;
		case 'n':
			errno = 0;
			t->limit = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || t->limit < 0) {
				cli_err("tail: -n wants a number of events (0 or more), not '%s'",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'a':
			t->all = true;
			break;
		case 'f':
			t->follow = true;
			break;
		case 't':
			if (add_types(t, optarg)) {
				cli_err("out of memory");
				return EXIT_FAILED;
			}
			break;
		case 's':
			clock_gettime(CLOCK_REALTIME, &now);
			if (tail_parse_since(optarg,
					     (uint64_t)now.tv_sec * 1000000000ull + now.tv_nsec,
					     &t->since)) {
				cli_err("tail: --since '%s' is neither RFC 3339 "
					"(2026-11-27T11:00:00Z) nor a time ago (30s, 10m, 2h, 1d)",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'j':
			t->json = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("tail: unexpected argument '%s'", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (t->limit == -2)
		t->limit = t->all ? -1 : 10;
	return 0;
}

static int open_error(struct tail *t, const struct rev_config *cfg, int err)
{
	if (err == -ENOENT)
		cli_err("cannot read %s: %s (is log.path right in %s? has the agent run?)", t->path,
			strerror(-err), cfg->path);
	else if (err == -EACCES || err == -EPERM)
		cli_err("cannot read %s: %s (run as a user who may read it, or with sudo)", t->path,
			strerror(-err));
	else
		cli_err("cannot read %s: %s", t->path, strerror(-err));
	return EXIT_FAILED;
}

int cmd_tail(int argc, char **argv)
{
	struct tail t = {.limit = -2, .fd = -1};
	struct rev_config cfg = {0};
	char dir[PATH_MAX];
	struct stat dst;
	sigset_t mask;
	int rc, err;

	rc = parse_args(&t, argc, argv);
	if (rc)
		goto out_args;
	/* Without -c, the running agent's log (its record), else the default config's. */
	rc = cli_find_agent_or_config(t.cfg_path, &cfg);
	if (rc)
		goto out_args;
	t.path = t.where = cfg.log.path;
	if (t.limit > 1 << 20)
		t.limit = 1 << 20; /* a backlog larger than this is what --all is for */
	if (t.limit > 0 && !(t.ring = calloc(t.limit, sizeof(char *)))) {
		cli_err("out of memory");
		rc = EXIT_FAILED;
		goto out;
	}
	if (t.follow) {
		/* Blocked before anything is read: a Ctrl-C at any point ends following cleanly. */
		sigemptyset(&mask);
		sigaddset(&mask, SIGINT);
		sigaddset(&mask, SIGTERM);
		sigprocmask(SIG_BLOCK, &mask, NULL);
	}
	t.fd = open_file(t.path, &t.st);
	err = t.fd < 0 ? -errno : 0;
	if (err) {
		evlog_dir(t.path, dir, sizeof(dir));
		/* Following a log the agent has yet to create is waiting for it. */
		if (!(t.follow && err == -ENOENT && !stat(dir, &dst))) {
			rc = open_error(&t, &cfg, err);
			goto out;
		}
	}
	if (!t.json)
		printf("%-27s  %-16s DETAILS\n", "TIME", "TYPE");
	if (t.all)
		replay(&t, NULL, NULL, 0, t.fd);
	if (t.fd >= 0)
		read_live(&t);
	flush_backlog(&t);
	rc = t.follow ? follow(&t, &mask) : EXIT_OK;
	if (t.bad > BAD_LINES_SHOWN)
		cli_err("warning: %zu damaged lines skipped in all", t.bad);
out:
	if (t.fd >= 0)
		close(t.fd);
	config_free(&cfg);
out_args:
	for (size_t i = 0; i < t.ring_count; i++)
		free(t.ring[(t.ring_start + i) % t.ring_count]);
	free(t.ring);
	for (size_t i = 0; i < t.n_types; i++)
		free(t.types[i]);
	free(t.types);
	free(t.lb.buf);
	free(t.last);
	return rc < 0 ? EXIT_OK : rc;
}
