// SPDX-License-Identifier: MIT
/* Rotating line files and the event log on top of one. A rotlog owns a file's fd, its rotation
 * and its compressor child; it serves the event log (log.path) and every service's output file.
 * Lines are appended with one write(2) per file on an O_APPEND fd, so concurrent readers see
 * whole lines only. A rotation never renames the file being written: the old inode gets a second
 * name (a hard link), then a fresh file is renamed over the path, so the path always exists and
 * every line is in exactly one file. Each event is serialised by cJSON into one such line. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/log.h"
#include "lib/loop.h"
#include "lib/util.h"

struct rotlog {
	char *path;
	char *key; /* the config key that names path, for messages */
	int fd;
	long long size;
	struct rotlog_opts o;
	unsigned long long next_seq; /* SEQ of the next pending segment */
	int rotate_err;		     /* last rotation error reported, so it is said once */
	bool no_reserve;	     /* the filesystem cannot preallocate (fallocate) */
	struct loop *loop;
	/* The compressor: one child at a time, watched through its pidfd. */
	pid_t child;
	int child_pidfd;
	bool child_in_loop;
	unsigned long long child_seq; /* pending segments below this SEQ existed when it started */
};

struct evlog {
	struct rotlog *rl;
	bool echo;
	evlog_tap_fn tap; /* the status page's live stream */
	void *tap_ctx;
};

void evlog_set_tap(struct evlog *lg, evlog_tap_fn fn, void *ctx)
{
	lg->tap = fn;
	lg->tap_ctx = ctx;
}

uint64_t ev_mono_to_real_ns(uint64_t mono)
{
	struct timespec r, m;
	uint64_t rn, mn;

	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	rn = (uint64_t)r.tv_sec * 1000000000ull + r.tv_nsec;
	mn = (uint64_t)m.tv_sec * 1000000000ull + m.tv_nsec;
	if (!mono || mono > mn)
		return rn;
	return rn - (mn - mono);
}

void ev_format_ts(char *buf, size_t len, uint64_t real_ns)
{
	time_t sec = real_ns / 1000000000ull;
	unsigned usec = (real_ns % 1000000000ull) / 1000;
	struct tm tm;
	char base[32];

	gmtime_r(&sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06uZ", base, usec);
}

/* n decimal digits, no sign, no spaces. Stops at the first non-digit, so never reads past a NUL. */
static int take_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int take_char(const char **p, const char *any)
{
	if (!**p || !strchr(any, **p))
		return -EINVAL;
	(*p)++;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): timegm()
 * would do, but it depends on nothing here being mktime-normalised, and this cannot overflow. */
static long long days_from_civil(int y, int m, int d)
{
	long long era;
	int yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dim[m - 1];
}

int ev_parse_ts(const char *s, uint64_t *real_ns)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, nd = 0;
	const char *p = s;
	uint64_t frac = 0;
	long long secs;

	if (take_digits(&p, 4, &y) || take_char(&p, "-") || take_digits(&p, 2, &mo) ||
	    take_char(&p, "-") || take_digits(&p, 2, &d) || take_char(&p, "Tt ") ||
	    take_digits(&p, 2, &h) || take_char(&p, ":") || take_digits(&p, 2, &mi) ||
	    take_char(&p, ":") || take_digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++, nd++)
			if (nd < 9)
				frac = frac * 10 + (*p - '0');
		for (; nd < 9; nd++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (take_digits(&p, 2, &oh) || take_char(&p, ":") || take_digits(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
	    sec > 60 || oh > 23 || om > 59)
		return -EINVAL;
	secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	       sign * (oh * 3600 + om * 60);
	if (secs < 0)
		return -ERANGE;
	*real_ns = (uint64_t)secs * 1000000000ull + frac;
	return 0;
}

/* ---- segment names, shared with the reader ---- */

static void seg_name(char *buf, size_t len, const char *path, int k, bool gz)
{
	snprintf(buf, len, "%s.%d%s", path, k, gz ? ".gz" : "");
}

/* A segment index: decimal, no sign, no leading zero (so one number has one name). */
static bool parse_idx(const char *s, unsigned long long *idx, const char **end)
{
	unsigned long long v = 0;
	int n = 0;

	if (*s < '1' || *s > '9')
		return false;
	for (; isdigit((unsigned char)*s) && n < 18; s++, n++)
		v = v * 10 + (*s - '0');
	*idx = v;
	*end = s;
	return true;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct evseg *x = a, *y = b;

	if (x->pending != y->pending)
		return x->pending ? 1 : -1;
	if (x->idx != y->idx)
		return (x->idx < y->idx) == x->pending ? -1 : 1;
	return (int)y->gz - (int)x->gz;
}

void evlog_dir(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(buf, len, ".");
	else if (slash == path)
		snprintf(buf, len, "/");
	else
		snprintf(buf, len, "%.*s", (int)(slash - path), path);
}

void evlog_segments_free(struct evseg *segs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(segs[i].path);
	free(segs);
}

int evlog_segments(const char *path, struct evseg **segs, size_t *n)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path, *rest, *end;
	size_t blen = strlen(base), cap = 0;
	char dir[PATH_MAX];
	struct dirent *de;
	struct evseg s;
	DIR *d;
	int ret = 0;

	*segs = NULL;
	*n = 0;
	evlog_dir(path, dir, sizeof(dir));
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, base, blen) || de->d_name[blen] != '.')
			continue;
		rest = de->d_name + blen + 1;
		memset(&s, 0, sizeof(s));
		s.pending = !strncmp(rest, "pending.", 8);
		if (!parse_idx(s.pending ? rest + 8 : rest, &s.idx, &end))
			continue;
		s.gz = !s.pending && !strcmp(end, ".gz");
		if (*end && !s.gz)
			continue;
		if (*n == cap) {
			struct evseg *g = realloc(*segs, (cap = cap ? cap * 2 : 8) * sizeof(*g));

			if (!g) {
				ret = -ENOMEM;
				break;
			}
			*segs = g;
		}
		if (asprintf(&s.path, "%.*s%s", (int)(base - path), path, de->d_name) < 0) {
			ret = -ENOMEM;
			break;
		}
		(*segs)[(*n)++] = s;
	}
	closedir(d);
	if (ret) {
		evlog_segments_free(*segs, *n);
		*segs = NULL;
		*n = 0;
		return ret;
	}
	if (*n > 1)
		qsort(*segs, *n, sizeof(**segs), seg_cmp);
	return 0;
}

/* The SEQ of the oldest pending segment; 0 when there is none (or the directory cannot be read). */
static unsigned long long oldest_pending(const char *path)
{
	unsigned long long lo = 0;
	struct evseg *s;
	size_t n;

	if (evlog_segments(path, &s, &n))
		return 0;
	for (size_t i = 0; i < n && !lo; i++)
		if (s[i].pending)
			lo = s[i].idx;
	evlog_segments_free(s, n);
	return lo;
}

/* ---- compression: runs in a child, or in-process when the log closes ---- */

/* PATH.1 (.gz) .. PATH.keep-1 move up one; PATH.keep is replaced, so at most `keep` remain. */
static void shift_segments(const char *path, int keep, bool gz)
{
	char from[PATH_MAX], to[PATH_MAX];

	/* log.keep may be lower than on the last run: what lies beyond it goes. */
	for (int k = keep + 1;; k++) {
		seg_name(to, sizeof(to), path, k, gz);
		if (unlink(to))
			break;
	}
	for (int k = keep - 1; k >= 1; k--) {
		seg_name(from, sizeof(from), path, k, gz);
		seg_name(to, sizeof(to), path, k + 1, gz);
		if (rename(from, to) && errno != ENOENT)
			fprintf(stderr, "revenant: cannot rename %s to %s: %s\n", from, to,
				strerror(errno));
	}
}

/* gzip src into dst, fsynced, so a rename of dst publishes a complete file. 0 or -errno. */
static int gzip_file(const char *src, const char *dst)
{
	int in, out, sync_fd = -1, ret = 0;
	char buf[65536];
	gzFile gz;
	ssize_t n;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		ret = -errno;
		close(in);
		return ret;
	}
	/* gzclose() closes out; fsync needs a descriptor of its own. */
	sync_fd = fcntl(out, F_DUPFD_CLOEXEC, 0);
	gz = sync_fd < 0 ? NULL : gzdopen(out, "wb");
	if (!gz) {
		ret = sync_fd < 0 ? -errno : -ENOMEM;
		close(out);
		goto done;
	}
	errno = 0; /* zlib sets it only when a write(2) failed */
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (gzwrite(gz, buf, n) != n) {
			ret = errno ? -errno : -EIO;
			break;
		}
	}
	if (n < 0 && !ret)
		ret = -errno;
	if (gzclose(gz) != Z_OK && !ret)
		ret = errno ? -errno : -EIO;
	if (!ret && fsync(sync_fd))
		ret = -errno;
done:
	if (sync_fd >= 0)
		close(sync_fd);
	close(in);
	if (ret)
		unlink(dst);
	return ret;
}

/* Turns every pending segment, oldest first, into PATH.1.gz, dropping those beyond keep. A lock
 * on the directory keeps two compressors (an orphan of a killed agent and ours) from shifting the
 * same segments. 0 or -errno; the cause is printed, and the segment stays pending (tail --all
 * still reads it). */
static int compress_pending(const char *path, int keep)
{
	char dir[PATH_MAX], tmp[PATH_MAX], first[PATH_MAX];
	struct stat live, st;
	struct evseg *s = NULL;
	size_t n = 0, i;
	int dfd, ret = 0;

	evlog_dir(path, dir, sizeof(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || flock(dfd, LOCK_EX)) {
		ret = -errno;
		fprintf(stderr, "revenant: cannot lock %s to compress %s: %s\n", dir, path,
			strerror(-ret));
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.gz.tmp", path);
	seg_name(first, sizeof(first), path, 1, true);
	for (;;) {
		evlog_segments_free(s, n);
		ret = evlog_segments(path, &s, &n);
		if (ret)
			break;
		for (i = 0; i < n && !s[i].pending; i++)
			;
		/* Still the live file: a rotation between its link and its rename, or one a crash
		 * cut there (the next agent undoes it). Its lines would be in two places. */
		if (i == n || (!stat(path, &live) && !stat(s[i].path, &st) &&
			       st.st_ino == live.st_ino && st.st_dev == live.st_dev))
			break;
		/* More queued than kept (rotations faster than compression): the oldest would be
		 * shifted out right after its compression, so it goes now, uncompressed. */
		if (n - i > (size_t)(keep > 0 ? keep : 0)) {
			if (!unlink(s[i].path))
				continue;
			ret = -errno;
			fprintf(stderr, "revenant: cannot remove %s: %s\n", s[i].path,
				strerror(-ret));
			break;
		}
		ret = gzip_file(s[i].path, tmp);
		if (ret) {
			fprintf(
			    stderr,
			    "revenant: cannot compress %s: %s (it stays uncompressed; check the "
			    "space and permissions of %s)\n",
			    s[i].path, strerror(-ret), dir);
			break;
		}
		shift_segments(path, keep, true);
		if (rename(tmp, first)) {
			ret = -errno;
			fprintf(stderr, "revenant: cannot rename %s to %s: %s\n", tmp, first,
				strerror(-ret));
			unlink(tmp);
			break;
		}
		unlink(s[i].path);
	}
	evlog_segments_free(s, n);
out:
	if (dfd >= 0)
		close(dfd);
	return ret;
}

static void compressor_start(struct rotlog *lg);

/* The compressor has exited (or, closing, will have). The agent's SIGCHLD handler reaps every
 * child with waitpid(-1), so its status may be gone (ECHILD): the files say whether it worked.
 * Closing touches no loop: the agent frees its loop before the log. */
static void compressor_reap(struct rotlog *lg, bool closing)
{
	struct pollfd p = {.fd = lg->child_pidfd, .events = POLLIN};
	unsigned long long lo;
	siginfo_t si;
	int r;

	if (!lg->child)
		return;
	while ((r = poll(&p, 1, closing ? -1 : 0)) < 0 && errno == EINTR)
		;
	if (r <= 0)
		return;
	waitid(P_PIDFD, lg->child_pidfd, &si, WEXITED | WNOHANG);
	if (lg->child_in_loop && !closing)
		loop_del_fd(lg->loop, lg->child_pidfd);
	close(lg->child_pidfd);
	lg->child_pidfd = -1;
	lg->child_in_loop = false;
	lg->child = 0;
	if (closing || !(lo = oldest_pending(lg->path)))
		return;
	if (lo < lg->child_seq)
		/* It said why; retrying now would fail the same way, the next rotation retries. */
		fprintf(stderr,
			"revenant: the compressor left %s.pending.%llu uncompressed; "
			"retrying at the next rotation\n",
			lg->path, lo);
	else
		compressor_start(lg); /* rotated while it ran */
}

static void on_compressor(struct loop *l, int fd, uint32_t events, void *ctx)
{
	(void)l;
	(void)fd;
	(void)events;
	compressor_reap(ctx, false);
}

static void compressor_start(struct rotlog *lg)
{
	sigset_t none;
	pid_t pid;

	if (lg->child || !oldest_pending(lg->path))
		return;
	pid = fork();
	if (pid < 0) {
		fprintf(stderr,
			"revenant: cannot fork the compressor of %s: %s (segments wait "
			"uncompressed for the next rotation)\n",
			lg->path, strerror(errno));
		return;
	}
	if (pid == 0) {
		/* The agent blocks SIGTERM/SIGINT/SIGCHLD into its signalfd: not ours to keep. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Out of the agent's process group: a Ctrl-C meant for the agent must not stop
		 * a compression half-way (the agent waits for us when it closes the log). */
		setpgid(0, 0);
		/* Not the agent's fds: its lock, sockets and BPF links must not outlive it here. */
		close_range(3, ~0U, 0);
		setpriority(PRIO_PROCESS, 0, 10);
		_exit(compress_pending(lg->path, lg->o.keep) ? 1 : 0);
	}
	lg->child = pid;
	lg->child_seq = lg->next_seq;
	/* Not reaped before we return to the loop, so the pid cannot have been reused yet. */
	lg->child_pidfd = pidfd_open_pid(pid);
	if (lg->child_pidfd < 0) {
		/* Cannot watch it: wait now rather than lose track of who shifts segments. */
		waitpid(pid, NULL, 0);
		lg->child = 0;
		return;
	}
	if (lg->loop && !loop_add_fd(lg->loop, lg->child_pidfd, EPOLLIN, on_compressor, lg))
		lg->child_in_loop = true;
}

int rotlog_attach_loop(struct rotlog *lg, struct loop *l)
{
	int ret = 0;

	if (lg->child_in_loop)
		loop_del_fd(lg->loop, lg->child_pidfd);
	lg->child_in_loop = false;
	lg->loop = l;
	if (l && lg->child) {
		ret = loop_add_fd(l, lg->child_pidfd, EPOLLIN, on_compressor, lg);
		lg->child_in_loop = !ret;
	}
	return ret;
}

/* ---- the writer ---- */

/* The file must end in a newline: a write cut short (disk full, or a fatal signal between pages
 * of a long line) leaves a half line, which goes rather than merge with the next line. */
static int cut_partial_line(struct rotlog *lg)
{
	char buf[4096];
	long long end = lg->size, off;
	ssize_t n;
	int rfd;

	if (!end)
		return 0;
	rfd = open(lg->path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	while (end > 0) {
		off = end > (long long)sizeof(buf) ? end - (long long)sizeof(buf) : 0;
		n = pread(rfd, buf, end - off, off);
		if (n <= 0)
			break;
		while (n > 0 && buf[n - 1] != '\n')
			n--;
		if (n > 0) {
			end = off + n;
			break;
		}
		end = off;
	}
	close(rfd);
	if (end == lg->size)
		return 0;
	fprintf(stderr, "revenant: %s ended in a partial line (%lld bytes, left by a crash): cut\n",
		lg->path, lg->size - end);
	if (ftruncate(lg->fd, end))
		return -errno;
	lg->size = end;
	return 0;
}

/* A rotation cut between its two steps (a crash) leaves the live file with a second name: that
 * name goes, or the segment would keep growing with the live file. */
static void undo_half_rotation(struct rotlog *lg)
{
	struct stat live, st;
	struct evseg *s;
	size_t n;

	if (fstat(lg->fd, &live) || evlog_segments(lg->path, &s, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		if (!s[i].gz && !stat(s[i].path, &st) && st.st_ino == live.st_ino &&
		    st.st_dev == live.st_dev)
			unlink(s[i].path);
		if (s[i].pending && s[i].idx >= lg->next_seq)
			lg->next_seq = s[i].idx + 1;
	}
	evlog_segments_free(s, n);
}

struct rotlog *rotlog_open(const struct rotlog_opts *o, char *err, size_t errlen)
{
	struct rotlog *lg = calloc(1, sizeof(*lg));
	const char *key = o->key ? o->key : "log.path";
	char tmp[PATH_MAX];
	struct stat st;
	int rc;

	if (!lg || !(lg->path = strdup(o->path)) || !(lg->key = strdup(key))) {
		snprintf(err, errlen, "out of memory");
		if (lg)
			free(lg->path);
		free(lg);
		return NULL;
	}
	lg->o = *o;
	lg->o.path = lg->path;
	lg->o.key = lg->key;
	lg->fd = lg->child_pidfd = -1;
	lg->next_seq = 1;
	rc = mkdir_p_parent(o->path, 0755);
	if (rc) {
		snprintf(err, errlen, "cannot create the directory of %s: %s (check %s)", o->path,
			 strerror(-rc), key);
		goto fail;
	}
	lg->fd = open(o->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (lg->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s (check %s)", o->path, strerror(errno), key);
		goto fail;
	}
	if (fstat(lg->fd, &st) == 0)
		lg->size = st.st_size;
	rc = cut_partial_line(lg);
	if (rc)
		fprintf(stderr, "revenant: cannot check the end of %s: %s\n", o->path,
			strerror(-rc));
	snprintf(tmp, sizeof(tmp), "%s.new", o->path);
	unlink(tmp);
	undo_half_rotation(lg);
	compressor_start(lg); /* what a previous run left pending */
	return lg;
fail:
	rotlog_close(lg);
	return NULL;
}

const char *rotlog_path(const struct rotlog *lg)
{
	return lg->path;
}

/* The old file keeps its inode under the segment name (link), and a fresh file replaces the path
 * (rename): readers following the path see a new inode, while the old one is complete. */
static int rotate(struct rotlog *lg)
{
	char next[PATH_MAX], seg[PATH_MAX];
	bool keep = lg->o.keep > 0;
	int fd, ret;

	snprintf(next, sizeof(next), "%s.new", lg->path);
	fd = open(next, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (keep && lg->o.compress) {
		/* Unique: rotations while the compressor runs queue up instead of waiting. */
		snprintf(seg, sizeof(seg), "%s.pending.%llu", lg->path, lg->next_seq++);
	} else if (keep) {
		shift_segments(lg->path, lg->o.keep, false);
		seg_name(seg, sizeof(seg), lg->path, 1, false);
	}
	if (keep && link(lg->path, seg)) {
		ret = -errno;
		goto fail;
	}
	if (rename(next, lg->path)) {
		ret = -errno;
		if (keep)
			unlink(seg);
		goto fail;
	}
	close(lg->fd);
	lg->fd = fd;
	lg->size = 0;
	if (keep && lg->o.compress) {
		compressor_reap(lg, false);
		compressor_start(lg);
	}
	return 0;
fail:
	close(fd);
	unlink(next);
	return ret;
}

/* A rotation that fails is said once per cause; the lines still go to the old file. */
static int rotate_or_say(struct rotlog *lg)
{
	int rc = rotate(lg);

	if (rc && rc != lg->rotate_err)
		fprintf(stderr,
			"revenant: cannot rotate %s: %s (it grows past the size limit of %s until a "
			"rotation succeeds)\n",
			lg->path, strerror(-rc), lg->key);
	lg->rotate_err = rc;
	return rc;
}

/* The length of the longest prefix of buf[0..len) that ends a line within room bytes. */
static size_t lines_within(const char *buf, size_t len, size_t room)
{
	const char *nl;

	if (room > len)
		room = len;
	nl = room ? memrchr(buf, '\n', room) : NULL;
	return nl ? (size_t)(nl - buf) + 1 : 0;
}

/* The space for len more bytes, taken before they are written (the size stays): a full disk
 * then fails the whole batch up front instead of leaving half a line that readers could see
 * before it is cut. Filesystems that cannot preallocate are written to as they are. */
static int reserve(struct rotlog *lg, size_t len)
{
	if (lg->no_reserve || !fallocate(lg->fd, FALLOC_FL_KEEP_SIZE, lg->size, len))
		return 0;
	if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)
		return -errno;
	lg->no_reserve = true; /* EOPNOTSUPP and the like: not this filesystem's */
	return 0;
}

/* One write(2), reserved first. A short one all the same keeps the whole lines it wrote and
 * cuts the rest, so no half line stays behind. */
static int append(struct rotlog *lg, const char *buf, size_t len, size_t *written)
{
	ssize_t n;
	size_t keep;
	int rc = reserve(lg, len);

	if (rc)
		return rc;
	n = write(lg->fd, buf, len);

	if (n == (ssize_t)len) {
		lg->size += n;
		*written += n;
		return 0;
	}
	rc = n < 0 ? -errno : -ENOSPC; /* a short write is the disk filling up */
	keep = n > 0 ? lines_within(buf, n, n) : 0;
	if (n > 0 && (size_t)n != keep && ftruncate(lg->fd, lg->size + keep))
		rc = -errno;
	lg->size += keep;
	*written += keep;
	return rc;
}

int rotlog_write(struct rotlog *lg, const char *buf, size_t len, size_t *written)
{
	long long max = lg->o.max_bytes;
	size_t dummy = 0, n;
	int rc;

	if (!written)
		written = &dummy;
	*written = 0;
	if (lg->fd < 0)
		return -EBADF;
	while (len) {
		n = len;
		if (max > 0 && lg->size + (long long)len > max) {
			n = lines_within(buf, len, lg->size < max ? (size_t)(max - lg->size) : 0);
			if (!n && lg->size > 0 && !rotate_or_say(lg))
				continue; /* a fresh file: what fits now is measured again */
			/* A line longer than the limit starts an empty file on its own; a failed
			 * rotation writes on: better too big than lost. */
			if (!n)
				n = lg->rotate_err ? len : lines_within(buf, len, len);
			if (!n)
				n = len; /* no newline at all: the caller's business */
		}
		rc = append(lg, buf, n, written);
		if (rc)
			return rc;
		buf += n;
		len -= n;
	}
	return 0;
}

void rotlog_close(struct rotlog *lg)
{
	if (!lg)
		return;
	if (lg->child)
		compressor_reap(lg, true);
	/* A clean stop leaves nothing uncompressed: the rest is done here, the loop is over. */
	if (lg->fd >= 0 && oldest_pending(lg->path))
		compress_pending(lg->path, lg->o.keep);
	if (lg->fd >= 0)
		close(lg->fd);
	free(lg->path);
	free(lg->key);
	free(lg);
}

/* ---- the event log: one JSON object per line of a rotlog ---- */

struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen)
{
	struct rotlog_opts ro = {.path = o->path,
				 .key = "log.path",
				 .max_bytes = o->max_bytes,
				 .keep = o->keep,
				 .compress = o->compress};
	struct evlog *lg = calloc(1, sizeof(*lg));

	if (!lg) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	lg->echo = o->echo;
	lg->rl = rotlog_open(&ro, err, errlen);
	if (!lg->rl) {
		free(lg);
		return NULL;
	}
	return lg;
}

int evlog_attach_loop(struct evlog *lg, struct loop *l)
{
	return rotlog_attach_loop(lg->rl, l);
}

static void echo(const cJSON *obj)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
	char *s = cJSON_PrintUnformatted(obj);

	if (s && cJSON_IsString(type))
		fprintf(stderr, "revenant: %s\n", s);
	free(s);
}

int evlog_emit(struct evlog *lg, cJSON *obj)
{
	char *line;
	size_t len;
	int rc = 0;

	if (!obj)
		return -ENOMEM;
	line = cJSON_PrintUnformatted(obj);
	if (lg && lg->echo)
		echo(obj);
	cJSON_Delete(obj);
	if (!line)
		return -ENOMEM;
	len = strlen(line);
	line[len] = '\n'; /* cJSON's terminator becomes the newline: one buffer, one write */
	if (lg)
		rc = rotlog_write(lg->rl, line, len + 1, NULL);
	if (lg && lg->tap)
		lg->tap(lg->tap_ctx, line, len);
	free(line);
	return rc;
}

void evlog_close(struct evlog *lg)
{
	if (!lg)
		return;
	rotlog_close(lg->rl);
	free(lg);
}
