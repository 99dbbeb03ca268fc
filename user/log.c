// SPDX-License-Identifier: MIT
/* The event log: owns log.path's fd. Each event is serialised by cJSON and appended with a single
 * write(2) on an O_APPEND fd, so concurrent readers see whole lines only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct evlog {
	char *path;
	int fd;
	long long size;
	struct evlog_opts o;
};

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

cJSON *ev_new(const char *type, uint64_t mono_ts_ns)
{
	cJSON *o = cJSON_CreateObject();
	char ts[40];

	if (!o)
		return NULL;
	ev_format_ts(ts, sizeof(ts), ev_mono_to_real_ns(mono_ts_ns));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", type);
	return o;
}

void ev_add_str(cJSON *o, const char *k, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

void ev_add_num(cJSON *o, const char *k, double v)
{
	cJSON_AddNumberToObject(o, k, v);
}

void ev_add_bool(cJSON *o, const char *k, bool v)
{
	cJSON_AddBoolToObject(o, k, v);
}

struct evlog *evlog_open(const struct evlog_opts *o, char *err, size_t errlen)
{
	struct evlog *lg = calloc(1, sizeof(*lg));
	struct stat st;
	int rc;

	if (!lg) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	lg->o = *o;
	lg->path = strdup(o->path);
	lg->fd = -1;
	rc = mkdir_p_parent(o->path, 0755);
	if (rc) {
		snprintf(err, errlen, "cannot create the directory of %s: %s (check log.path)", o->path,
			 strerror(-rc));
		goto fail;
	}
	lg->fd = open(o->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (lg->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s (check log.path)", o->path, strerror(errno));
		goto fail;
	}
	if (fstat(lg->fd, &st) == 0)
		lg->size = st.st_size;
	return lg;
fail:
	evlog_close(lg);
	return NULL;
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
	ssize_t n;
	int rc = 0;

	if (!obj)
		return -ENOMEM;
	line = cJSON_PrintUnformatted(obj);
	if (lg && lg->o.echo)
		echo(obj);
	cJSON_Delete(obj);
	if (!line)
		return -ENOMEM;
	len = strlen(line);
	line[len] = '\n'; /* cJSON's terminator becomes the newline: one buffer, one write */
	if (lg && lg->fd >= 0) {
		n = write(lg->fd, line, len + 1);
		if (n < 0)
			rc = -errno;
		else if ((size_t)n != len + 1)
			rc = -EIO;
		else
			lg->size += n;
	}
	free(line);
	return rc;
}

int evlog_poll_fd(struct evlog *lg)
{
	(void)lg;
	return -1;
}

void evlog_on_child(struct evlog *lg)
{
	(void)lg;
}

void evlog_close(struct evlog *lg)
{
	if (!lg)
		return;
	if (lg->fd >= 0)
		close(lg->fd);
	free(lg->path);
	free(lg);
}
