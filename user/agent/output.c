// SPDX-License-Identifier: MIT
/* The services' output, read by the agent: owns the read ends of every service's stdout and
 * stderr pipes (registered in the loop), each service's output files (rotlogs, opened at its
 * first start and kept across restarts) and the count of what could not be written. One read of
 * at most READ_CHUNK per wake-up per pipe, so a flooding service takes its turn with the control
 * socket and the ring buffer; a write that fails drops its lines at once instead of waiting. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "agent/output.h"
#include "lib/log.h"
#include "lib/util.h"

#define READ_CHUNK	65536
#define BATCH_FLUSH	(256 * 1024)		/* formatted lines written at once, at most */
#define DRAIN_MAX	(16 * READ_CHUNK)	/* read per pipe when its process is reaped */
#define REPORT_EVERY_NS (10ull * 1000000000ull) /* losses that go on are told this often */

/* ---- lines ---- */

static void cut_piece(struct linesplit *ls, const char **data, size_t *n, out_line_fn fn, void *ctx)
{
	size_t room = OUT_LINE_MAX - ls->len;

	if (!ls->len) {
		fn(ctx, *data, OUT_LINE_MAX, true); /* straight from the chunk: no copy */
	} else {
		memcpy(ls->buf + ls->len, *data, room);
		fn(ctx, ls->buf, OUT_LINE_MAX, true);
		ls->len = 0;
	}
	*data += room;
	*n -= room;
}

void linesplit_feed(struct linesplit *ls, const char *data, size_t n, out_line_fn fn, void *ctx)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;

		/* More than a line may hold before its end: a piece goes out, marked partial. */
		if (ls->len + take > OUT_LINE_MAX) {
			cut_piece(ls, &data, &n, fn, ctx);
			continue;
		}
		if (!nl) {
			memcpy(ls->buf + ls->len, data, take);
			ls->len += take;
			return;
		}
		if (!ls->len) {
			fn(ctx, data, take, false); /* the usual case: a whole line in the chunk */
		} else {
			memcpy(ls->buf + ls->len, data, take);
			fn(ctx, ls->buf, ls->len + take, false);
			ls->len = 0;
		}
		data += take + 1;
		n -= take + 1;
	}
}

void linesplit_finish(struct linesplit *ls, out_line_fn fn, void *ctx)
{
	if (ls->len)
		fn(ctx, ls->buf, ls->len, false);
	ls->len = 0;
}

const char *out_stream_name(enum out_stream s)
{
	return s == OUT_STDERR ? "stderr" : "stdout";
}

/* ---- the agent's side ---- */

/* One service's files and what happened to its output. */
struct sink {
	char *name;
	char *path[2]; /* stdout, stderr: the same string when they share a file */
	long long max_bytes;
	int keep;
	bool timestamps;
	struct rotlog *file[2]; /* file[1] == file[0] when shared */
	struct out_stats st;
	/* losses not told yet */
	bool losing;
	int err;
	uint64_t unrep_bytes, unrep_lines, last_report_ns;
	struct sink *next;
};

/* One pipe of one spawn of a service; it lives until its last writer is gone (a daemon the
 * service left behind may outlive the main process). */
struct ostream {
	struct outputs *o;
	struct sink *sink;
	enum out_stream stream;
	pid_t pid;
	int fd;
	bool in_cut;	/* the line being read was cut already */
	bool unwatched; /* not in the loop (it could not be added) */
	char ts[OUT_TS_LEN + 8];
	struct linesplit ls;
	struct ostream *next;
};

struct outputs {
	struct loop *loop;
	bool compress;
	out_warn_fn warn;
	void *ctx;
	struct sink *sinks;
	struct ostream *streams;
	char *batch;
	size_t blen, bcap;
	bool oom; /* the batch could not grow: its lines were dropped */
	char rbuf[READ_CHUNK];
};

static void warnf(struct outputs *o, const struct sink *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warnf(struct outputs *o, const struct sink *k, const char *fmt, ...)
{
	char detail[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (o->warn)
		o->warn(o->ctx, k->name, detail);
}

struct outputs *outputs_new(struct loop *l, bool compress, out_warn_fn warn, void *ctx)
{
	struct outputs *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->loop = l;
	o->compress = compress;
	o->warn = warn;
	o->ctx = ctx;
	return o;
}

static void sink_close_files(struct sink *k)
{
	for (int i = 1; i >= 0; i--) {
		if (!k->file[i] || (i == 1 && k->file[1] == k->file[0])) {
			k->file[i] = NULL;
			continue;
		}
		rotlog_attach_loop(k->file[i], NULL);
		rotlog_close(k->file[i]);
		k->file[i] = NULL;
	}
	if (k->path[1] != k->path[0])
		free(k->path[1]);
	free(k->path[0]);
	k->path[0] = k->path[1] = NULL;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void report_losses(struct outputs *o, struct sink *k, const char *how)
{
	if (!k->unrep_bytes && !k->unrep_lines)
		return;
	warnf(o, k,
	      "%s: %llu bytes in %llu lines of output were dropped (%s); %llu bytes in %llu lines "
	      "in all",
	      how, (unsigned long long)k->unrep_bytes, (unsigned long long)k->unrep_lines,
	      strerror(-k->err), (unsigned long long)k->st.lost_bytes,
	      (unsigned long long)k->st.lost_lines);
	k->unrep_bytes = k->unrep_lines = 0;
	k->last_report_ns = now_ns();
}

/* Lines that could not be written (rest: the formatted lines, lines of them). */
static void lost(struct outputs *o, struct sink *k, const char *path, int err, size_t rest,
		 size_t lines)
{
	uint64_t bytes = rest - (k->timestamps ? lines * OUT_PREFIX_LEN : 0);

	k->st.lost_bytes += bytes;
	k->st.lost_lines += lines;
	k->unrep_bytes += bytes;
	k->unrep_lines += lines;
	k->err = err;
	if (!k->losing) {
		k->losing = true;
		warnf(o, k,
		      "cannot write the output to %s: %s; its lines are dropped until it can "
		      "(%llu bytes in %llu lines so far)",
		      path, strerror(-err), (unsigned long long)k->unrep_bytes,
		      (unsigned long long)k->unrep_lines);
		k->unrep_bytes = k->unrep_lines = 0;
		k->last_report_ns = now_ns();
	} else if (now_ns() - k->last_report_ns >= REPORT_EVERY_NS) {
		report_losses(o, k, "still failing");
	}
}

static void flush(struct ostream *s)
{
	struct outputs *o = s->o;
	struct sink *k = s->sink;
	struct rotlog *f = k->file[s->stream];
	size_t written = 0, lines = 0;
	int rc;

	if (!o->blen)
		return;
	rc = f ? rotlog_write(f, o->batch, o->blen, &written) : -EBADF;
	if (rc) {
		for (size_t i = written; i < o->blen; i++)
			lines += o->batch[i] == '\n';
		lost(o, k, k->path[s->stream], rc, o->blen - written, lines);
	} else if (k->losing) {
		k->losing = false;
		report_losses(o, k, "written again");
	}
	o->blen = 0;
}

static int batch_room(struct outputs *o, size_t need)
{
	size_t cap = o->bcap ? o->bcap : 4 * READ_CHUNK;
	char *b;

	if (o->blen + need <= o->bcap)
		return 0;
	while (cap < o->blen + need)
		cap *= 2;
	b = realloc(o->batch, cap);
	if (!b)
		return -ENOMEM;
	o->batch = b;
	o->bcap = cap;
	return 0;
}

static void on_line(void *ctx, const char *line, size_t len, bool partial)
{
	struct ostream *s = ctx;
	struct outputs *o = s->o;
	struct sink *k = s->sink;
	char *w;

	if (partial && !s->in_cut) {
		k->st.cut_lines++;
		/* the 1st, 2nd, 4th, ... cut line is told */
		if (!(k->st.cut_lines & (k->st.cut_lines - 1)))
			warnf(o, k,
			      "a line of its %s longer than %d bytes was cut into pieces (%s); "
			      "%llu lines cut so far",
			      out_stream_name(s->stream), OUT_LINE_MAX,
			      k->timestamps ? "each but the last marked P"
					    : "not marked: "
					      "log_timestamps is off",
			      (unsigned long long)k->st.cut_lines);
	}
	s->in_cut = partial;
	if (!partial)
		k->st.lines++;
	if (batch_room(o, len + OUT_PREFIX_LEN + 1)) {
		lost(o, k, k->path[s->stream], -ENOMEM,
		     len + 1 + (k->timestamps ? OUT_PREFIX_LEN : 0), 1);
		return;
	}
	w = o->batch + o->blen;
	if (k->timestamps) {
		memcpy(w, s->ts, OUT_TS_LEN);
		w += OUT_TS_LEN;
		*w++ = ' ';
		memcpy(w, out_stream_name(s->stream), 6);
		w += 6;
		*w++ = ' ';
		*w++ = partial ? 'P' : 'F';
		*w++ = ' ';
	}
	memcpy(w, line, len);
	w += len;
	*w++ = '\n';
	o->blen = w - o->batch;
	if (o->blen >= BATCH_FLUSH)
		flush(s);
}

static void stamp(struct ostream *s)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	ev_format_ts(s->ts, sizeof(s->ts), (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec);
}

static void stream_free(struct outputs *o, struct ostream *s)
{
	struct ostream **pp = &o->streams;

	linesplit_finish(&s->ls, on_line, s);
	flush(s);
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp)
		*pp = s->next;
	if (s->fd >= 0) {
		if (!s->unwatched)
			loop_del_fd(o->loop, s->fd);
		close(s->fd);
	}
	free(s);
}

/* One read: the bytes taken, 0 when there is nothing now, -1 when the stream ended (s is freed:
 * every writer is gone, or the pipe failed and nothing more will come). */
static ssize_t read_once(struct outputs *o, struct ostream *s)
{
	ssize_t n = read(s->fd, o->rbuf, sizeof(o->rbuf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	stamp(s);
	if (n <= 0) {
		stream_free(o, s);
		return -1;
	}
	linesplit_feed(&s->ls, o->rbuf, n, on_line, s);
	flush(s);
	return n;
}

/* Read what the pipe holds now, up to DRAIN_MAX. false when the stream ended (s is freed). */
static bool drain(struct outputs *o, struct ostream *s)
{
	size_t got = 0;
	ssize_t n = 0;

	while (got < DRAIN_MAX && (n = read_once(o, s)) > 0)
		got += n;
	return n >= 0;
}

static void on_readable(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct ostream *s = ctx;

	(void)l;
	(void)fd;
	(void)events;
	read_once(s->o, s);
}

void outputs_drain(struct outputs *o, pid_t pid)
{
	struct ostream *s, *next;

	if (!o)
		return;
	for (s = o->streams; s; s = next) {
		next = s->next;
		if (s->pid == pid)
			drain(o, s);
	}
}

int out_pipes_open(struct out_pipes *p)
{
	int fds[2][2] = {{-1, -1}, {-1, -1}};

	for (int i = 0; i < 2; i++) {
		if (pipe2(fds[i], O_CLOEXEC) || fcntl(fds[i][0], F_SETFL, O_NONBLOCK)) {
			int err = -errno;

			for (int j = 0; j <= i; j++)
				for (int k = 0; k < 2; k++)
					if (fds[j][k] >= 0)
						close(fds[j][k]);
			return err;
		}
		p->ours[i] = fds[i][0];
		p->child[i] = fds[i][1];
	}
	return 0;
}

void out_pipes_close(struct out_pipes *p)
{
	for (int i = 0; i < 2; i++) {
		if (p->child[i] >= 0)
			close(p->child[i]);
		if (p->ours[i] >= 0)
			close(p->ours[i]);
		p->child[i] = p->ours[i] = -1;
	}
}

static bool sink_matches(const struct sink *k, const struct service_config *c)
{
	return k->path[0] && !strcmp(k->path[0], c->log_file) &&
	       !strcmp(k->path[1], c->stderr_file) && k->max_bytes == c->log_max_bytes &&
	       k->keep == c->log_keep && k->timestamps == c->log_timestamps;
}

static int sink_open(struct outputs *o, struct sink *k, const struct service_config *c, char *err,
		     size_t errlen)
{
	char key[2][128];
	bool shared = !strcmp(c->log_file, c->stderr_file);

	snprintf(key[0], sizeof(key[0]), "services.%s.log_file", c->name);
	snprintf(key[1], sizeof(key[1]), "services.%s.stderr_file", c->name);
	k->max_bytes = c->log_max_bytes;
	k->keep = c->log_keep;
	k->timestamps = c->log_timestamps;
	k->path[0] = strdup(c->log_file);
	k->path[1] = shared ? k->path[0] : strdup(c->stderr_file);
	if (!k->path[0] || !k->path[1]) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < (shared ? 1 : 2); i++) {
		struct rotlog_opts ro = {.path = k->path[i],
					 .key = key[i],
					 .max_bytes = k->max_bytes,
					 .keep = k->keep,
					 .compress = o->compress};

		k->file[i] = rotlog_open(&ro, err, errlen);
		if (!k->file[i])
			return -EIO;
		if (rotlog_attach_loop(k->file[i], o->loop))
			fprintf(stderr,
				"revenant: cannot watch the compressor of %s; it is checked at "
				"each rotation\n",
				k->path[i]);
	}
	if (shared)
		k->file[1] = k->file[0];
	return 0;
}

/* The files of c: opened at its first start, again when its settings changed (a reload). */
static struct sink *sink_get(struct outputs *o, const struct service_config *c, char *err,
			     size_t errlen)
{
	struct sink *k;

	for (k = o->sinks; k && strcmp(k->name, c->name); k = k->next)
		;
	if (k && sink_matches(k, c))
		return k;
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k || !(k->name = strdup(c->name))) {
			free(k);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		k->next = o->sinks;
		o->sinks = k;
	}
	sink_close_files(k);
	if (sink_open(o, k, c, err, errlen)) {
		sink_close_files(k);
		return NULL;
	}
	return k;
}

int outputs_open(struct outputs *o, const struct service_config *c, char *err, size_t errlen)
{
	return sink_get(o, c, err, errlen) ? 0 : -EIO;
}

int outputs_attach(struct outputs *o, const struct service_config *c, pid_t pid,
		   struct out_pipes *p, char *warn, size_t warnlen)
{
	struct sink *k = sink_get(o, c, warn, warnlen);
	int rc = k ? 0 : -EIO;

	for (int i = 0; i < 2 && k; i++) {
		struct ostream *s = calloc(1, sizeof(*s));
		int r;

		if (!s) {
			snprintf(warn, warnlen, "out of memory");
			rc = -ENOMEM;
			break;
		}
		*s = (struct ostream){.o = o,
				      .sink = k,
				      .stream = i ? OUT_STDERR : OUT_STDOUT,
				      .pid = pid,
				      .fd = p->ours[i]};
		/* Unwatched, the pipe still stays open (closing it would kill the service with
		 * SIGPIPE): it is read when the process is reaped and when the agent stops. */
		r = loop_add_fd(o->loop, s->fd, EPOLLIN, on_readable, s);
		if (r) {
			snprintf(warn, warnlen,
				 "cannot watch its %s pipe: %s; it is read only when "
				 "the service exits",
				 out_stream_name(s->stream), strerror(-r));
			s->unwatched = true;
			rc = r;
		}
		s->next = o->streams;
		o->streams = s;
		p->ours[i] = -1; /* the stream's now */
	}
	return rc;
}

void outputs_stats(const struct outputs *o, const char *service, struct out_stats *st)
{
	const struct sink *k;

	memset(st, 0, sizeof(*st));
	for (k = o ? o->sinks : NULL; k; k = k->next)
		if (!strcmp(k->name, service))
			*st = k->st;
}

void outputs_free(struct outputs *o)
{
	if (!o)
		return;
	/* What is in the pipes now is written; a writer that goes on (a daemon the service left)
	 * loses the rest when the agent is gone. */
	while (o->streams) {
		struct ostream *s = o->streams;

		if (drain(o, s))
			stream_free(o, s);
	}
	while (o->sinks) {
		struct sink *k = o->sinks;

		o->sinks = k->next;
		report_losses(o, k, "at the agent's stop");
		sink_close_files(k);
		free(k->name);
		free(k);
	}
	free(o->batch);
	free(o);
}
