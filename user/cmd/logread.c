// SPDX-License-Identifier: MIT
/* The reading side of rotated line files, shared by `tail` (the event log) and `logs` (services'
 * output): the line and (gzip) segment readers, a consistent view of the segments while the
 * compressor renames them, the backlog (every line, or the last N across segments), the merge of
 * several files by time, and following the live files across rotations with inotify. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cmd/cli.h"
#include "cmd/logread.h"
#include "lib/log.h"

#define READ_CHUNK 65536
#define SNAP_TRIES 1000 /* consistent listings attempted while the compressor renames */

struct lr_item {
	uint64_t ts;
	char *text;
};

/* ---- lines ---- */

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

/* ---- what the sources emit, until the backlog is out ---- */

void lr_init(struct lr_set *set, struct lr_src *src, size_t n, long long limit)
{
	set->src = src;
	set->n = n;
	set->limit = limit;
	set->live_out = false;
	for (size_t i = 0; i < n; i++) {
		src[i].set = set;
		src[i].idx = i;
		src[i].fd = -1;
		src[i].where = src[i].path;
	}
}

static void items_free(struct lr_src *s)
{
	for (size_t i = 0; i < s->n_items; i++)
		free(s->items[(s->start_items + i) % s->cap_items].text);
	free(s->items);
	s->items = NULL;
	s->n_items = s->cap_items = s->start_items = 0;
}

void lr_free(struct lr_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct lr_src *s = &set->src[i];

		items_free(s);
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		free(s->lb.buf);
		free(s->last);
		memset(&s->lb, 0, sizeof(s->lb));
		s->last = NULL;
	}
}

void lr_emit(struct lr_src *s, uint64_t ts_ns, char *text)
{
	struct lr_set *set = s->set;

	if (!text)
		return;
	if (s->counting) {
		s->counted++;
		free(text);
		return;
	}
	/* Following, or everything of one file: nothing to merge or drop, out it goes. */
	if (set->live_out || (set->limit < 0 && set->n == 1)) {
		fputs(text, stdout);
		free(text);
		return;
	}
	if (!set->limit) {
		free(text);
		return;
	}
	if (set->limit > 0 && s->n_items == (size_t)set->limit) {
		struct lr_item *it = &s->items[s->start_items];

		free(it->text);
		*it = (struct lr_item){ts_ns, text};
		s->start_items = (s->start_items + 1) % s->cap_items;
		return;
	}
	if (s->n_items == s->cap_items) {
		size_t cap = set->limit > 0 ? (size_t)set->limit
			     : s->cap_items ? s->cap_items * 2
					    : 64;
		struct lr_item *v = realloc(s->items, cap * sizeof(*v));

		if (!v) {
			cli_err("out of memory: a line of %s is not shown", s->path);
			free(text);
			return;
		}
		s->items = v;
		s->cap_items = cap;
	}
	s->items[(s->start_items + s->n_items++) % s->cap_items] = (struct lr_item){ts_ns, text};
}

static struct lr_item *item_at(struct lr_src *s, size_t k)
{
	return &s->items[(s->start_items + k) % s->cap_items];
}

void lr_flush(struct lr_set *set)
{
	size_t total = 0, skip, *next = calloc(set->n ? set->n : 1, sizeof(size_t));

	for (size_t i = 0; i < set->n; i++)
		total += set->src[i].n_items;
	skip = set->limit >= 0 && total > (size_t)set->limit ? total - (size_t)set->limit : 0;
	/* Each file stays in its own order (kernel timestamps need not be monotonic in the event
	 * log); between files, the earlier head goes first, the first file on a tie. */
	for (size_t out = 0; next && out < total; out++) {
		struct lr_item *best = NULL;
		size_t bi = 0;

		for (size_t i = 0; i < set->n; i++) {
			struct lr_src *s = &set->src[i];
			struct lr_item *it;

			if (next[i] == s->n_items)
				continue;
			it = item_at(s, next[i]);
			if (!best || it->ts < best->ts) {
				best = it;
				bi = i;
			}
		}
		next[bi]++;
		if (out >= skip)
			fputs(best->text, stdout);
	}
	free(next);
	for (size_t i = 0; i < set->n; i++)
		items_free(&set->src[i]);
	set->live_out = true;
	fflush(stdout);
}

/* ---- the segments ---- */

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

/* Reading segments: from the start, from where the last N lines begin, or after the line a
 * follower last saw. */
struct replay {
	struct lr_src *s;
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

	r->s->lineno++;
	if (r->skipping) {
		r->skipping = !same_line(r->after, r->after_len, line, len);
		return 0;
	}
	if (same_line(r->stop, r->stop_len, line, len)) {
		r->stopped = true;
		return 1;
	}
	r->s->on_line(r->s, line, len);
	return 0;
}

/* How many lines of segment fd the caller would print (a counting pass through on_line). */
static size_t count_lines(struct lr_src *s, int fd, struct replay *r)
{
	char err[256];

	s->counting = true;
	s->counted = 0;
	r->stopped = false;
	evseg_read(fd, replay_line, r, err, sizeof(err));
	r->stopped = false;
	s->counting = false;
	return s->counted;
}

#define REPLAY_ALL SIZE_MAX

/* The segments' lines in order, up to where the live file (live_fd) begins: every one (need
 * REPLAY_ALL), the newest holding `need` printed lines, or (after: the file a follower was
 * reading, and its last line) only what came after it — the files rotated in between, which a
 * follower slower than two rotations never saw under the path. */
static void replay(struct lr_src *s, size_t need, const struct stat *after, const char *after_line,
		   size_t after_len, int live_fd)
{
	struct replay r = {.s = s, .after = after_line, .after_len = after_len};
	struct stat live = {0};
	struct snap sn = {0};
	size_t start = 0, i, got = 0;
	char err[256];
	int ret;

	ret = snap_take(s->path, &sn);
	if (ret) {
		cli_err("warning: cannot list the segments of %s: %s", s->path, strerror(-ret));
		return;
	}
	if (live_fd >= 0 && !fstat(live_fd, &live))
		r.stop = first_line(live_fd, &r.stop_len);
	if (after) {
		for (start = sn.n, i = sn.n; i-- > 0;) {
			if (same_file(&sn.st[i], after)) {
				start = i + 1;
				break;
			}
			if (after_line &&
			    evseg_read(sn.fds[i], find_after, &r, err, sizeof(err)) > 0) {
				start = i;
				r.skipping = true;
				break;
			}
		}
		if (i == (size_t)-1 && sn.n && after_line)
			cli_err(
			    "warning: %s was rotated faster than it could be followed and the "
			    "lines in between are no longer in any segment; some may be missing",
			    s->path);
	} else if (need != REPLAY_ALL) {
		for (start = sn.n; start > 0 && got < need; start--) {
			if (live_fd >= 0 && same_file(&sn.st[start - 1], &live))
				continue;
			got += count_lines(s, sn.fds[start - 1], &r);
		}
	}
	for (i = start; i < sn.n && !r.stopped; i++) {
		if (live_fd >= 0 && same_file(&sn.st[i], &live))
			break;
		s->where = sn.segs[i].path;
		s->lineno = 0;
		ret = evseg_read(sn.fds[i], replay_line, &r, err, sizeof(err));
		if (ret < 0)
			cli_err("warning: %s: %s; the rest of this segment is skipped",
				sn.segs[i].path, err);
	}
	s->where = s->path;
	free(r.stop);
	snap_free(&sn);
}

/* ---- the live file ---- */

static int live_line(const char *line, size_t len, void *ctx)
{
	struct lr_src *s = ctx;

	if (len > s->last_cap) {
		char *b = realloc(s->last, len);

		if (!b)
			return -ENOMEM;
		s->last = b;
		s->last_cap = len;
	}
	memcpy(s->last, line, len);
	s->last_len = len;
	s->lineno++;
	s->on_line(s, line, len);
	return 0;
}

/* Reads the live file from where it was left to its current end. */
static int read_live(struct lr_src *s)
{
	char buf[READ_CHUNK];
	ssize_t n;
	int ret;

	if (s->fd < 0)
		return 0;
	while ((n = read(s->fd, buf, sizeof(buf))) > 0)
		if ((ret = lines_feed(&s->lb, buf, n, live_line, s)))
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

int lr_open(struct lr_src *s)
{
	s->fd = open_file(s->path, &s->st);
	return s->fd < 0 ? -errno : 0;
}

void lr_read(struct lr_src *s, bool all)
{
	long long limit = s->set->limit;
	size_t need = REPLAY_ALL;

	if (!all && limit >= 0) {
		/* The live file first: the segments only when it holds fewer than the last N. */
		struct replay r = {.s = s};

		need = 0;
		if (s->fd >= 0)
			need = count_lines(s, s->fd, &r);
		lseek(s->fd, 0, SEEK_SET);
		need = need >= (size_t)limit ? 0 : (size_t)limit - need;
	}
	if (need)
		replay(s, need, NULL, NULL, 0, s->fd);
	s->lineno = 0;
	read_live(s);
}

void lr_open_error(const char *path, int err, const char *config_path)
{
	if (err == -ENOENT)
		cli_err("cannot read %s: %s (is the path right in %s? has the agent run?)", path,
			strerror(-err), config_path);
	else if (err == -EACCES || err == -EPERM)
		cli_err("cannot read %s: %s (run as a user who may read it, or with sudo)", path,
			strerror(-err));
	else
		cli_err("cannot read %s: %s", path, strerror(-err));
}

/* ---- following ---- */

/* The path changed (or appeared): the old file is finished, because the agent writes to the new
 * one only after renaming it over the path; read it to its end, then what was rotated in between,
 * then switch. Truncation in place (someone else's copytruncate) starts the file over. */
static void follow_check(struct lr_src *s)
{
	struct stat st;
	int fd;

	read_live(s);
	if (stat(s->path, &st))
		return; /* between someone's unlink and create: the create wakes us */
	if (s->fd >= 0 && same_file(&st, &s->st)) {
		if (st.st_size < lseek(s->fd, 0, SEEK_CUR)) {
			lseek(s->fd, 0, SEEK_SET);
			s->lb.len = 0;
			s->lineno = 0;
			read_live(s);
		}
		return;
	}
	fd = open_file(s->path, &st);
	if (fd < 0)
		return;
	if (s->fd >= 0) {
		read_live(s);
		lines_finish(&s->lb, live_line, s);
		/* The old fd stays open meanwhile, so its inode number cannot be reused. */
		replay(s, 0, &s->st, s->last_len ? s->last : NULL, s->last_len, fd);
		close(s->fd);
	}
	s->fd = fd;
	s->st = st;
	s->where = s->path;
	s->lineno = 0;
	s->last_len = 0;
	read_live(s);
}

static const char *base_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* Whether an inotify batch concerns one of the files or their segments; -ENOENT when a watched
 * directory itself went away. */
static int drain_inotify(int ifd, const struct lr_set *set)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool relevant = false;
	ssize_t n;

	while ((n = read(ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;

			if (e->mask & IN_IGNORED)
				return -ENOENT;
			if (e->mask & IN_Q_OVERFLOW)
				relevant = true;
			for (size_t i = 0; e->len && i < set->n && !relevant; i++) {
				const char *b = base_of(set->src[i].path);

				relevant = !strncmp(e->name, b, strlen(b));
			}
			p += sizeof(*e) + e->len;
		}
	}
	return relevant;
}

int lr_follow(struct lr_set *set, const sigset_t *mask)
{
	char dir[PATH_MAX];
	struct pollfd p[2];
	int ifd, sfd, ret = EXIT_OK, r;

	sfd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sfd < 0 || ifd < 0) {
		cli_err("cannot watch for changes: %s (fs.inotify.max_user_instances may be "
			"exhausted)",
			strerror(errno));
		ret = EXIT_FAILED;
		goto out;
	}
	for (size_t i = 0; i < set->n; i++) {
		evlog_dir(set->src[i].path, dir, sizeof(dir));
		if (inotify_add_watch(ifd, dir,
				      IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM |
					  IN_DELETE) < 0) {
			cli_err(
			    "cannot watch %s: %s (fs.inotify.max_user_watches may be exhausted)",
			    dir, strerror(errno));
			ret = EXIT_FAILED;
			goto out;
		}
	}
	/* Anything that happened before the watches existed. */
	for (size_t i = 0; i < set->n; i++)
		follow_check(&set->src[i]);
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
		r = drain_inotify(ifd, set);
		if (r < 0) {
			cli_err("a directory of %s was removed; nothing more to follow",
				set->src[0].path);
			ret = EXIT_FAILED;
			break;
		}
		for (size_t i = 0; r && i < set->n; i++)
			follow_check(&set->src[i]);
	}
out:
	fflush(stdout);
	if (sfd >= 0)
		close(sfd);
	if (ifd >= 0)
		close(ifd);
	return ret;
}
