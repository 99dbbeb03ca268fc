// SPDX-License-Identifier: MIT
/* Rotating line files and the event log on top of one. A rotlog owns a file's fd, its checked
 * directory, its rotation and its compressor child; it serves the event log (log.path) and every
 * service's output file. Everything is opened relative to the directory's fd, opened once and
 * checked (lib/safefs), never through a symlink, new files with O_EXCL: in a directory other
 * users share, a name they planted is refused or removed, never written through. Lines are
 * appended with one write(2) per file on an O_APPEND fd, so concurrent readers see whole lines
 * only. A rotation never renames the file being written: the old inode gets a second name (a hard
 * link), then a fresh file is renamed over the path, so the path always exists and every line is
 * in exactly one file. Each event is serialised by cJSON into one such line; a line the event
 * log cannot write (a full disk) waits in a bounded queue and is retried, never lost silently. */
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
#include "lib/events.h"
#include "lib/loop.h"
#include "lib/safefs.h"
#include "lib/util.h"

/* Lines a failed write could not place wait here, oldest first, and are retried whole. */
#define QUEUE_MAX_LINES 4096
#define QUEUE_MAX_BYTES (1 << 20)
#define RETRY_FIRST_MS	100u
#define RETRY_MAX_MS	10000u
#define REPORT_EVERY_NS (10ull * 1000000000ull) /* stderr: one message per 10 s while failing */

/* A file name in the directory and the names made from it (BASE.new, BASE.pending.SEQ, ...). */
#define NAME_MAX_LEN 300

struct rotlog {
	char *path;
	char *key;	    /* the config key that names path, for messages */
	char base[256];	    /* the file's name in its directory */
	struct sdir dir;    /* the checked directory: every file is opened relative to it */
	int fd;
	long long size;
	long long cut_to;   /* >= 0: a short write left bytes past this; cut before writing */
	struct rotlog_opts o;
	unsigned long long next_seq; /* SEQ of the next pending segment */
	int rotate_err;		     /* last rotation error reported, so it is said once */
	bool no_reserve;	     /* the filesystem cannot preallocate (fallocate) */
	bool devnull;		     /* /dev/null: written to, never repaired or rotated */
	struct loop *loop;
	/* The compressor: one child at a time, watched through its pidfd. */
	pid_t child;
	int child_pidfd;
	bool child_in_loop;
	unsigned long long child_seq; /* pending segments below this SEQ existed when it started */
};

struct qline {
	struct qline *next;
	size_t len;
	char data[];
};

struct evlog {
	struct rotlog *rl;
	bool echo;
	struct loop *loop;
	/* Writes that fail (a full disk): the queue, the retry and what is owed to the reader. */
	struct qline *q_head, *q_tail;
	size_t q_n, q_bytes;
	struct loop_timer retry;
	unsigned retry_ms;
	bool failing;		     /* an events_lost is owed: it is the first line after recovery */
	int fail_err;		     /* errno of the first failure of this episode */
	uint64_t fail_since;	     /* CLOCK_REALTIME ns of that failure */
	uint64_t write_errors;	     /* failed or short write(2)s, ever */
	uint64_t lost;		     /* lines dropped (queue full), ever */
	uint64_t ep_errors, ep_lost; /* the same, since the episode began */
	uint64_t reported_ns;	     /* last stderr report (CLOCK_MONOTONIC) */
	char warn[700];		     /* an agent_warning to log after the current line */
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

static void seg_name(char *buf, size_t len, const char *base, int k, bool gz)
{
	snprintf(buf, len, "%s.%d%s", base, k, gz ? ".gz" : "");
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

/* The segments among d's entries; d is closed. Paths are path's directory part + the name. */
static int collect_segments(DIR *d, const char *path, struct evseg **segs, size_t *n)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path, *rest, *end;
	size_t blen = strlen(base), cap = 0;
	struct dirent *de;
	struct evseg s;
	int ret = 0;

	*segs = NULL;
	*n = 0;
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
		s.name = s.path + (base - path);
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

int evlog_segments(const char *path, struct evseg **segs, size_t *n)
{
	char dir[PATH_MAX];
	DIR *d;

	*segs = NULL;
	*n = 0;
	evlog_dir(path, dir, sizeof(dir));
	d = opendir(dir);
	if (!d)
		return -errno;
	return collect_segments(d, path, segs, n);
}

/* The writer's listing: through its checked directory, not the path. */
static int segments_at(int dfd, const char *path, struct evseg **segs, size_t *n)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	*segs = NULL;
	*n = 0;
	if (!d) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return -e;
	}
	return collect_segments(d, path, segs, n);
}

/* The SEQ of the oldest pending segment; 0 when there is none (or the directory cannot be read). */
static unsigned long long oldest_pending(int dfd, const char *path)
{
	unsigned long long lo = 0;
	struct evseg *s;
	size_t n;

	if (segments_at(dfd, path, &s, &n))
		return 0;
	for (size_t i = 0; i < n && !lo; i++)
		if (s[i].pending)
			lo = s[i].idx;
	evlog_segments_free(s, n);
	return lo;
}

/* ---- compression: runs in a child, or in-process when the log closes ---- */

/* BASE.1 (.gz) .. BASE.keep-1 move up one; BASE.keep is replaced, so at most `keep` remain. */
static void shift_segments(int dfd, const char *path, const char *base, int keep, bool gz)
{
	char from[NAME_MAX_LEN], to[NAME_MAX_LEN];

	/* log.keep may be lower than on the last run: what lies beyond it goes. */
	for (int k = keep + 1;; k++) {
		seg_name(to, sizeof(to), base, k, gz);
		if (unlinkat(dfd, to, 0))
			break;
	}
	for (int k = keep - 1; k >= 1; k--) {
		seg_name(from, sizeof(from), base, k, gz);
		seg_name(to, sizeof(to), base, k + 1, gz);
		/* rename() never follows a link: a planted name is moved or replaced, not used */
		if (renameat(dfd, from, dfd, to) && errno != ENOENT)
			fprintf(stderr, "revenant: cannot rename %s.%d%s: %s\n", path, k,
				gz ? ".gz" : "", strerror(errno));
	}
}

/* gzip src into a fresh dst (both in d), fsynced, so a rename of dst publishes a complete file.
 * src must be a regular file, and in a shared directory the agent's own. 0 or -errno. */
static int gzip_file(const struct sdir *d, const char *src, const char *dst, char *err,
		     size_t errlen)
{
	int in, out, sync_fd = -1, ret = 0;
	char buf[65536];
	bool planted;
	gzFile gz;
	ssize_t n;

	in = sdir_file(d, src, O_RDONLY, 0, 0, NULL, err, errlen);
	if (in < 0)
		return in;
	out = sdir_file(d, dst, O_WRONLY, SFILE_FRESH, 0644, &planted, err, errlen);
	if (planted)
		fprintf(stderr, "revenant: warning: removed %s/%s, which another user had put there\n",
			d->path, dst);
	if (out < 0) {
		close(in);
		return out;
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
	if (ret) {
		unlinkat(d->fd, dst, 0);
		snprintf(err, errlen, "%s", strerror(-ret));
	}
	return ret;
}

static bool same_file(int dfd, const char *a, const char *b)
{
	struct stat x, y;

	return !fstatat(dfd, a, &x, AT_SYMLINK_NOFOLLOW) &&
	       !fstatat(dfd, b, &y, AT_SYMLINK_NOFOLLOW) && x.st_ino == y.st_ino &&
	       x.st_dev == y.st_dev;
}

/* Turns every pending segment, oldest first, into PATH.1.gz, dropping those beyond keep. A lock
 * on the directory keeps two compressors (an orphan of a killed agent and ours) from shifting the
 * same segments. 0 or -errno; the cause is printed, and the segment stays pending (tail --all
 * still reads it). */
static int compress_pending(const struct sdir *d, const char *path, const char *base, int keep)
{
	char tmp[NAME_MAX_LEN], first[NAME_MAX_LEN], err[600];
	struct evseg *s = NULL;
	size_t n = 0, i;
	int lfd, ret = 0;

	/* An open file description of our own: a lock on one shared with the agent (fork) would
	 * not keep us apart from it. */
	lfd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lfd < 0 || flock(lfd, LOCK_EX)) {
		ret = -errno;
		fprintf(stderr, "revenant: cannot lock %s to compress %s: %s\n", d->path, path,
			strerror(-ret));
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.gz.tmp", base);
	seg_name(first, sizeof(first), base, 1, true);
	for (;;) {
		evlog_segments_free(s, n);
		ret = segments_at(d->fd, path, &s, &n);
		if (ret)
			break;
		for (i = 0; i < n && !s[i].pending; i++)
			;
		/* Still the live file: a rotation between its link and its rename, or one a crash
		 * cut there (the next agent undoes it). Its lines would be in two places. */
		if (i == n || same_file(d->fd, base, s[i].name))
			break;
		/* More queued than kept (rotations faster than compression): the oldest would be
		 * shifted out right after its compression, so it goes now, uncompressed. */
		if (n - i > (size_t)(keep > 0 ? keep : 0)) {
			if (!unlinkat(d->fd, s[i].name, 0))
				continue;
			ret = -errno;
			fprintf(stderr, "revenant: cannot remove %s: %s\n", s[i].path,
				strerror(-ret));
			break;
		}
		ret = gzip_file(d, s[i].name, tmp, err, sizeof(err));
		if (ret == -EPERM || ret == -EINVAL || ret == -ELOOP) {
			/* Not a segment of ours (planted in a shared directory): it goes, unread. */
			fprintf(stderr, "revenant: warning: removing %s: %s\n", s[i].path, err);
			if (!unlinkat(d->fd, s[i].name, 0))
				continue;
		}
		if (ret) {
			fprintf(stderr,
				"revenant: cannot compress %s: %s (it stays uncompressed; check the "
				"space and permissions of %s)\n",
				s[i].path, err, d->path);
			break;
		}
		shift_segments(d->fd, path, base, keep, true);
		if (renameat(d->fd, tmp, d->fd, first)) {
			ret = -errno;
			fprintf(stderr, "revenant: cannot rename %s.gz.tmp to %s.1.gz: %s\n", path,
				path, strerror(-ret));
			unlinkat(d->fd, tmp, 0);
			break;
		}
		unlinkat(d->fd, s[i].name, 0);
	}
	evlog_segments_free(s, n);
out:
	if (lfd >= 0)
		close(lfd);
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
	if (closing || !(lo = oldest_pending(lg->dir.fd, lg->path)))
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

	if (lg->child || !oldest_pending(lg->dir.fd, lg->path))
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
		struct sdir d = lg->dir;

		/* The agent blocks SIGTERM/SIGINT/SIGCHLD into its signalfd: not ours to keep. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Out of the agent's process group: a Ctrl-C meant for the agent must not stop
		 * a compression half-way (the agent waits for us when it closes the log). */
		setpgid(0, 0);
		/* Not the agent's fds (its lock, sockets and BPF links must not outlive it here):
		 * only the file's checked directory stays, as fd 3. */
		if (d.fd != 3 && dup2(d.fd, 3) < 0)
			_exit(1);
		d.fd = 3;
		close_range(4, ~0U, 0);
		setpriority(PRIO_PROCESS, 0, 10);
		_exit(compress_pending(&d, lg->path, lg->base, lg->o.keep) ? 1 : 0);
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
 * of a long line) leaves a half line, which goes rather than merge with the next line. Read
 * through the fd already open: the name is not looked up again. */
static int cut_partial_line(struct rotlog *lg)
{
	char buf[4096];
	long long end = lg->size, off;
	ssize_t n;

	if (!end)
		return 0;
	while (end > 0) {
		off = end > (long long)sizeof(buf) ? end - (long long)sizeof(buf) : 0;
		n = pread(lg->fd, buf, end - off, off);
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

	if (fstat(lg->fd, &live) || segments_at(lg->dir.fd, lg->path, &s, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		if (!s[i].gz && !fstatat(lg->dir.fd, s[i].name, &st, AT_SYMLINK_NOFOLLOW) &&
		    st.st_ino == live.st_ino && st.st_dev == live.st_dev)
			unlinkat(lg->dir.fd, s[i].name, 0);
		if (s[i].pending && s[i].idx >= lg->next_seq)
			lg->next_seq = s[i].idx + 1;
	}
	evlog_segments_free(s, n);
}

/* err gets " (check KEY)" appended, so the message names the setting to fix. */
static void say_key(char *err, size_t errlen, const char *key)
{
	size_t n = strlen(err);

	if (n < errlen)
		snprintf(err + n, errlen - n, " (check %s)", key);
}

struct rotlog *rotlog_open(const struct rotlog_opts *o, char *err, size_t errlen)
{
	struct rotlog *lg = calloc(1, sizeof(*lg));
	const char *key = o->key ? o->key : "log.path";
	char dir[PATH_MAX], tmp[NAME_MAX_LEN];
	struct stat st;
	int rc;

	if (!lg || !(lg->path = strdup(o->path)) || !(lg->key = strdup(key))) {
		snprintf(err, errlen, "out of memory");
		if (lg)
			free(lg->path);
		free(lg);
		errno = ENOMEM;
		return NULL;
	}
	lg->o = *o;
	lg->o.path = lg->path;
	lg->o.key = lg->key;
	lg->fd = lg->child_pidfd = lg->dir.fd = -1;
	lg->next_seq = 1;
	lg->cut_to = -1;
	rc = path_split(o->path, dir, sizeof(dir), lg->base, sizeof(lg->base));
	if (rc) {
		snprintf(err, errlen, "%s: not a path to a file (check %s)", o->path, key);
		goto fail;
	}
	/* Everything of the file lives in this directory, opened once and checked: owned by root,
	 * and writable by others only when sticky (then only files of ours are used). */
	rc = sdir_open(&lg->dir, dir, SDIR_CREATE, 0755, err, errlen);
	if (rc) {
		say_key(err, errlen, key);
		goto fail;
	}
	/* Read too: the check of the file's end reads through this fd, not the name. */
	rc = sdir_file(&lg->dir, lg->base, O_RDWR | O_APPEND, SFILE_CREATE | SFILE_DEVNULL, 0644,
		       NULL, err, errlen);
	if (rc < 0) {
		say_key(err, errlen, key);
		goto fail;
	}
	lg->fd = rc;
	if (fstat(lg->fd, &st) == 0) {
		lg->size = st.st_size;
		lg->devnull = !S_ISREG(st.st_mode);
	}
	if (lg->devnull) {
		/* output discarded on purpose: no end to check, nothing to rotate or reserve */
		lg->no_reserve = true;
		return lg;
	}
	rc = cut_partial_line(lg);
	if (rc)
		fprintf(stderr, "revenant: cannot check the end of %s: %s\n", o->path,
			strerror(-rc));
	snprintf(tmp, sizeof(tmp), "%s.new", lg->base);
	unlinkat(lg->dir.fd, tmp, 0);
	undo_half_rotation(lg);
	compressor_start(lg); /* what a previous run left pending */
	return lg;
fail:
	rotlog_close(lg);
	errno = -rc;
	return NULL;
}

const char *rotlog_path(const struct rotlog *lg)
{
	return lg->path;
}

bool rotlog_replaced(const struct rotlog *lg)
{
	struct stat path, open;

	if (lg->devnull || lg->fd < 0 || fstat(lg->fd, &open))
		return false;
	/* the name in the checked directory, not the path again: never through a link */
	return fstatat(lg->dir.fd, lg->base, &path, AT_SYMLINK_NOFOLLOW) ||
	       path.st_ino != open.st_ino || path.st_dev != open.st_dev;
}

static void rotlog_warn(struct rotlog *lg, const char *detail)
{
	if (lg->o.warn)
		lg->o.warn(lg->o.warn_ctx, detail);
	else
		fprintf(stderr, "revenant: warning: %s\n", detail);
}

/* The old file keeps its inode under the segment name (link), and a fresh file replaces the path
 * (rename): readers following the path see a new inode, while the old one is complete. */
static int rotate(struct rotlog *lg)
{
	char next[NAME_MAX_LEN], seg[NAME_MAX_LEN], err[600], detail[700];
	bool keep = lg->o.keep > 0, planted;
	int fd, ret;

	/* A fresh file (O_EXCL): whatever has the name, a leftover or a link another user planted
	 * in a shared directory, is removed, never opened. */
	snprintf(next, sizeof(next), "%s.new", lg->base);
	fd = sdir_file(&lg->dir, next, O_RDWR | O_APPEND, SFILE_FRESH, 0644, &planted, err,
		       sizeof(err));
	if (planted) {
		snprintf(detail, sizeof(detail),
			 "removed %s.new, which another user had put in %s (a rotation file is "
			 "always made fresh)",
			 lg->path, lg->dir.path);
		rotlog_warn(lg, detail);
	}
	if (fd < 0)
		return fd;
	if (keep && lg->o.compress) {
		/* Unique: rotations while the compressor runs queue up instead of waiting. */
		snprintf(seg, sizeof(seg), "%s.pending.%llu", lg->base, lg->next_seq++);
	} else if (keep) {
		shift_segments(lg->dir.fd, lg->path, lg->base, lg->o.keep, false);
		seg_name(seg, sizeof(seg), lg->base, 1, false);
	}
	/* linkat() makes a new name only: a planted one is in the way (EEXIST), never used */
	if (keep && linkat(lg->dir.fd, lg->base, lg->dir.fd, seg, 0)) {
		ret = -errno;
		if (ret == -EEXIST && !unlinkat(lg->dir.fd, seg, 0) &&
		    !linkat(lg->dir.fd, lg->base, lg->dir.fd, seg, 0))
			ret = 0;
		if (ret)
			goto fail;
	}
	if (renameat(lg->dir.fd, next, lg->dir.fd, lg->base)) {
		ret = -errno;
		if (keep)
			unlinkat(lg->dir.fd, seg, 0);
		goto fail;
	}
	close(lg->fd);
	lg->fd = fd;
	lg->size = 0;
	lg->cut_to = -1;
	if (keep && lg->o.compress) {
		compressor_reap(lg, false);
		compressor_start(lg);
	}
	return 0;
fail:
	close(fd);
	unlinkat(lg->dir.fd, next, 0);
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

/* One write(2), reserved first. A short one all the same (the disk filled mid-batch) is
 * followed by one for the rest, whose error says why; then the whole lines written stay and
 * the rest is cut, so no half line stays behind. */
static int append(struct rotlog *lg, const char *buf, size_t len, size_t *written)
{
	size_t done = 0, keep;
	struct stat st;
	ssize_t n;
	int rc;

	/* A cut that failed last time comes first: the next line must not follow half a one. */
	if (lg->cut_to >= 0) {
		if (ftruncate(lg->fd, lg->cut_to))
			return -errno;
		lg->size = lg->cut_to;
		lg->cut_to = -1;
	}
	rc = reserve(lg, len);
	if (rc)
		return rc;
	while (done < len) {
		n = write(lg->fd, buf + done, len - done);
		if (n > 0) {
			done += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		rc = n < 0 ? -errno : -ENOSPC;
		break;
	}
	if (done == len) {
		lg->size += len;
		*written += len;
		return 0;
	}
	keep = lines_within(buf, done, done);
	*written += keep;
	if (done == keep) {
		lg->size += keep;
		return rc;
	}
	/* The half line at the end goes. The end comes from the file, not from our count, which a
	 * truncation by someone else would have made wrong. */
	lg->cut_to = !fstat(lg->fd, &st) && st.st_size >= (off_t)done
			 ? st.st_size - (off_t)(done - keep)
			 : lg->size + (long long)keep;
	lg->size = lg->cut_to;
	if (!ftruncate(lg->fd, lg->cut_to))
		lg->cut_to = -1;
	return rc;
}

int rotlog_write(struct rotlog *lg, const char *buf, size_t len, size_t *written)
{
	long long max = lg->devnull ? 0 : lg->o.max_bytes;
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
	if (lg->fd >= 0 && !lg->devnull && oldest_pending(lg->dir.fd, lg->path))
		compress_pending(&lg->dir, lg->path, lg->base, lg->o.keep);
	if (lg->fd >= 0)
		close(lg->fd);
	sdir_close(&lg->dir);
	free(lg->path);
	free(lg->key);
	free(lg);
}

/* ---- the event log: one JSON object per line of a rotlog ---- */

static void on_retry(struct loop *l, void *ctx);

/* Called from inside a write: the agent_warning is logged after the line being written. */
static void keep_warning(void *ctx, const char *detail)
{
	struct evlog *lg = ctx;

	snprintf(lg->warn, sizeof(lg->warn), "%s", detail);
}

struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen)
{
	struct evlog *lg = calloc(1, sizeof(*lg));
	struct rotlog_opts ro = {.path = o->path,
				 .key = "log.path",
				 .max_bytes = o->max_bytes,
				 .keep = o->keep,
				 .compress = o->compress,
				 .warn = keep_warning,
				 .warn_ctx = lg};

	if (!lg) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	lg->echo = o->echo;
	loop_timer_init(&lg->retry, on_retry, lg);
	lg->rl = rotlog_open(&ro, err, errlen);
	if (!lg->rl) {
		int e = errno;

		free(lg);
		errno = e;
		return NULL;
	}
	return lg;
}

int evlog_attach_loop(struct evlog *lg, struct loop *l)
{
	if (lg->loop)
		loop_timer_cancel(lg->loop, &lg->retry);
	lg->loop = l;
	if (l && (lg->q_n || lg->failing))
		loop_timer_after_ms(l, &lg->retry, lg->retry_ms ? lg->retry_ms : RETRY_FIRST_MS);
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

/* One whole line, or nothing: rotlog_write() keeps whole lines only. */
static int write_line(struct evlog *lg, const char *data, size_t len)
{
	return rotlog_write(lg->rl, data, len, NULL);
}

static void arm_retry(struct evlog *lg)
{
	if (!lg->loop || lg->retry.armed)
		return;
	if (!lg->retry_ms)
		lg->retry_ms = RETRY_FIRST_MS;
	loop_timer_after_ms(lg->loop, &lg->retry, lg->retry_ms);
}

static void write_failed(struct evlog *lg, int rc)
{
	uint64_t now = mono_ns();

	lg->write_errors++;
	lg->ep_errors++;
	if (!lg->failing) {
		lg->failing = true;
		lg->fail_err = -rc;
		lg->fail_since = ev_mono_to_real_ns(0);
	}
	if (!lg->reported_ns || now - lg->reported_ns >= REPORT_EVERY_NS) {
		lg->reported_ns = now;
		fprintf(stderr,
			"revenant: cannot write the event log %s: %s (%zu lines kept in memory, "
			"%llu lost so far; retrying)\n",
			rotlog_path(lg->rl), strerror(-rc), lg->q_n,
			(unsigned long long)lg->ep_lost);
	}
	arm_retry(lg);
}

static void enqueue(struct evlog *lg, const char *data, size_t len)
{
	struct qline *q;

	if (lg->q_n >= QUEUE_MAX_LINES || lg->q_bytes + len > QUEUE_MAX_BYTES ||
	    !(q = malloc(sizeof(*q) + len))) {
		/* Full: this line is lost, and counted; the events_lost at recovery says so. */
		lg->lost++;
		lg->ep_lost++;
		lg->failing = true;
		return;
	}
	q->next = NULL;
	q->len = len;
	memcpy(q->data, data, len);
	if (lg->q_tail)
		lg->q_tail->next = q;
	else
		lg->q_head = q;
	lg->q_tail = q;
	lg->q_n++;
	lg->q_bytes += len;
}

/* The events_lost owed after a failure, encoded by lib/events.c like every event. NULL when out
 * of memory. */
static char *lost_line(const struct event *e, size_t *len)
{
	cJSON *o = ev_encode(e);
	char *line;

	if (!o)
		return NULL;
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		return NULL;
	*len = strlen(line);
	line[(*len)++] = '\n'; /* cJSON's terminator becomes the newline */
	return line;
}

/* Writes what a failure owes, in order: the events_lost, then the kept lines. 0 when all is
 * written, else the error of the write that failed (counted and reported). */
static int drain(struct evlog *lg)
{
	int rc = 0;

	if (lg->failing) {
		char since[40];
		struct event e = {.type = EV_EVENTS_LOST,
				  .events_lost = {.count = (int64_t)lg->ep_lost,
						  .reason = "log write failed",
						  .error = strerror(lg->fail_err),
						  .since = since,
						  .write_errors = (int64_t)lg->ep_errors,
						  .delayed = (int64_t)lg->q_n}};
		size_t len;
		char *line;

		ev_format_ts(since, sizeof(since), lg->fail_since);
		line = lost_line(&e, &len);

		if (!line)
			return -ENOMEM;
		rc = write_line(lg, line, len);
		/* echoed once, when written: a retry that fails again says nothing new */
		if (!rc && lg->echo)
			fprintf(stderr, "revenant: %.*s\n", (int)len - 1, line);
		free(line);
		if (rc) {
			write_failed(lg, rc);
			return rc;
		}
		/* Counted once it is in the file, with the other events (lg NULL: counted only),
		 * so the per-type counters match the lines written plus those lost. */
		ev_emit(NULL, &e);
		fprintf(stderr,
			"revenant: the event log %s is writable again: %zu lines written late, "
			"%llu lost, %llu failed writes\n",
			rotlog_path(lg->rl), lg->q_n, (unsigned long long)lg->ep_lost,
			(unsigned long long)lg->ep_errors);
		lg->failing = false;
		lg->ep_lost = lg->ep_errors = 0;
		lg->reported_ns = 0;
	}
	while (lg->q_head) {
		struct qline *q = lg->q_head;

		rc = write_line(lg, q->data, q->len);
		if (rc) {
			write_failed(lg, rc);
			return rc;
		}
		lg->q_head = q->next;
		if (!lg->q_head)
			lg->q_tail = NULL;
		lg->q_n--;
		lg->q_bytes -= q->len;
		free(q);
	}
	lg->retry_ms = 0;
	if (lg->loop)
		loop_timer_cancel(lg->loop, &lg->retry);
	return 0;
}

/* A rotation removed a file another user had planted: said in the log, after the line whose
 * write found it. Copied first: writing the warning may rotate (and warn) again. */
static void emit_warning(struct evlog *lg)
{
	char detail[sizeof(lg->warn)];
	struct event e = {.type = EV_AGENT_WARNING, .agent_warning = {.detail = detail}};

	memcpy(detail, lg->warn, sizeof(detail));
	lg->warn[0] = 0;
	ev_emit(lg, &e);
}

/* While lines wait: a deadline with back-off (100 ms doubling to 10 s), disarmed once they are
 * written. Every emit retries too. */
static void on_retry(struct loop *l, void *ctx)
{
	struct evlog *lg = ctx;

	(void)l;
	lg->retry_ms = lg->retry_ms * 2 < RETRY_MAX_MS ? lg->retry_ms * 2 : RETRY_MAX_MS;
	drain(lg);
	if (lg->warn[0])
		emit_warning(lg);
}

/* line[len] is a whole line with its newline. */
static int log_line(struct evlog *lg, const char *line, size_t len)
{
	int rc;

	/* Lines that wait go first: the log stays in order. */
	if ((lg->q_n || lg->failing) && drain(lg)) {
		enqueue(lg, line, len);
		return -EAGAIN;
	}
	rc = write_line(lg, line, len);
	if (rc) {
		enqueue(lg, line, len);
		write_failed(lg, rc);
	}
	return rc;
}

int evlog_emit(struct evlog *lg, cJSON *obj)
{
	char *line;
	size_t len;
	int rc;

	if (!obj)
		return -ENOMEM;
	if (!lg) {
		cJSON_Delete(obj);
		return 0;
	}
	line = cJSON_PrintUnformatted(obj);
	if (lg->echo)
		echo(obj);
	cJSON_Delete(obj);
	if (!line)
		return -ENOMEM;
	len = strlen(line);
	line[len] = '\n'; /* cJSON's terminator becomes the newline: one buffer, one write */
	rc = log_line(lg, line, len + 1);
	if (lg && lg->tap)
		lg->tap(lg->tap_ctx, line, len);
	free(line);
	if (lg->warn[0])
		emit_warning(lg);
	return rc;
}

void evlog_stats(const struct evlog *lg, struct evlog_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!lg)
		return;
	st->write_errors = lg->write_errors;
	st->lost = lg->lost;
	st->queued = lg->q_n;
}

void evlog_add_status(const struct evlog *lg, cJSON *obj)
{
	struct evlog_stats st;
	cJSON *o;

	if (!lg)
		return;
	evlog_stats(lg, &st);
	o = cJSON_AddObjectToObject(obj, "log");
	if (!o)
		return;
	cJSON_AddStringToObject(o, "path", rotlog_path(lg->rl));
	cJSON_AddNumberToObject(o, "write_errors", (double)st.write_errors);
	cJSON_AddNumberToObject(o, "lines_lost", (double)st.lost);
	cJSON_AddNumberToObject(o, "lines_queued", (double)st.queued);
}

void evlog_close(struct evlog *lg)
{
	struct qline *q;

	if (!lg)
		return;
	/* The timer lives in lg: out of a loop that is still attached before lg goes. */
	if (lg->loop)
		loop_timer_cancel(lg->loop, &lg->retry);
	lg->loop = NULL;
	/* A last try for what waits; what still cannot be written is lost, and said so. */
	if ((lg->q_n || lg->failing) && drain(lg))
		fprintf(stderr,
			"revenant: %zu lines of the event log %s could not be written: lost\n",
			lg->q_n, rotlog_path(lg->rl));
	if (lg->warn[0])
		fprintf(stderr, "revenant: warning: %s\n", lg->warn);
	while ((q = lg->q_head)) {
		lg->q_head = q->next;
		free(q);
	}
	rotlog_close(lg->rl);
	free(lg);
}
