// SPDX-License-Identifier: MIT
/* The host's agent record: a small JSON file the running agent writes and keeps write-locked (an
 * open-file-description lock, so a reader can test it without taking it), removed at a clean
 * stop. A record whose lock nobody holds is a killed agent's, and is ignored. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "lib/agentrec.h"
#include "lib/safefs.h"

#define RECORD_MAX 65536

const char *agentrec_path(void)
{
	const char *p = getenv(REV_AGENT_RECORD_ENV);

	return p && *p ? p : REV_AGENT_RECORD;
}

static struct flock whole(short type)
{
	return (struct flock){.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
}

/* Is the record's lock held (by an agent), tested without taking it? */
static bool held(int fd)
{
	struct flock fl = whole(F_WRLCK);

	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

static char *encode(const struct agent_rec *r)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cJSON_AddNumberToObject(o, "pid", r->pid);
	cJSON_AddStringToObject(o, "control", r->control);
	cJSON_AddStringToObject(o, "pin", r->pin);
	cJSON_AddStringToObject(o, "log", r->log);
	cJSON_AddStringToObject(o, "config", r->config);
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

int agentrec_claim(const struct agent_rec *r, pid_t *owner)
{
	const char *path = agentrec_path();
	struct flock fl = whole(F_WRLCK);
	struct agent_rec other;
	char *text, err[512];
	size_t len;
	int fd, rc;

	*owner = 0;
	/* Opened as every file the agent writes: never through a link or a file planted by
	 * another user (lib/safefs). */
	fd = safe_open(path, O_RDWR, SFILE_CREATE, SDIR_CREATE, 0644, err, sizeof(err));
	if (fd < 0)
		return fd;
	if (fcntl(fd, F_OFD_SETLK, &fl)) {
		rc = errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
		close(fd);
		if (rc == -EBUSY && agentrec_find(&other) == 0)
			*owner = other.pid;
		return rc;
	}
	text = encode(r);
	if (!text) {
		agentrec_release(fd);
		return -ENOMEM;
	}
	len = strlen(text);
	/* Readers believe it only under our lock, so a half-written record is never read as a
	 * live one: they see the lock only with this content (or a torn read they reject). */
	rc = ftruncate(fd, 0) || pwrite(fd, text, len, 0) != (ssize_t)len ? -errno : 0;
	free(text);
	if (rc) {
		agentrec_release(fd);
		return rc;
	}
	fchmod(fd, 0644);
	return fd;
}

void agentrec_release(int fd)
{
	struct stat mine, there;

	if (fd < 0)
		return;
	/* Only our own record: someone may have removed it and another agent made a new one. */
	if (fstat(fd, &mine) == 0 && stat(agentrec_path(), &there) == 0 &&
	    mine.st_ino == there.st_ino && mine.st_dev == there.st_dev)
		unlink(agentrec_path());
	close(fd);
}

static int copy_str(const cJSON *o, const char *key, char *dst, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsString(v) || strlen(v->valuestring) >= len)
		return -EINVAL;
	memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
	return 0;
}

int agentrec_find(struct agent_rec *r)
{
	char *buf = NULL;
	struct stat st;
	cJSON *o = NULL, *pid;
	ssize_t n;
	int fd = open(agentrec_path(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = -ENOENT;

	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_uid && st.st_uid != geteuid()) ||
	    st.st_size <= 0 || st.st_size > RECORD_MAX || !held(fd))
		goto out; /* not a record, not one we trust, or its agent is gone */
	buf = malloc(st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	n = pread(fd, buf, st.st_size, 0);
	if (n <= 0)
		goto out;
	buf[n] = 0;
	o = cJSON_Parse(buf);
	pid = cJSON_GetObjectItemCaseSensitive(o, "pid");
	if (!cJSON_IsNumber(pid) || pid->valuedouble < 1 ||
	    copy_str(o, "control", r->control, sizeof(r->control)) ||
	    copy_str(o, "pin", r->pin, sizeof(r->pin)) || copy_str(o, "log", r->log, sizeof(r->log)) ||
	    copy_str(o, "config", r->config, sizeof(r->config)))
		goto out;
	r->pid = (pid_t)pid->valuedouble;
	rc = 0;
out:
	cJSON_Delete(o);
	free(buf);
	close(fd);
	if (rc)
		memset(r, 0, sizeof(*r));
	return rc;
}
