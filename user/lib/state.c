// SPDX-License-Identifier: MIT
/* The runtime state file: written by the agent with write-to-temp + rename, read by everyone. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "lib/safefs.h"
#include "lib/agentrec.h"
#include "lib/state.h"
#include "lib/util.h"

void state_runtime_path(const char *control_socket, const char *name, char *buf, size_t len)
{
	char dir[4096], sock[256];

	/* Only the directory comes from the config; the names are ours. */
	if (path_split(control_socket, dir, sizeof(dir), sock, sizeof(sock)) ||
	    path_child(buf, len, dir, name))
		snprintf(buf, len, "%s", name);
}

int state_runtime_dir(const char *control_socket, struct sdir *d, char *err, size_t errlen)
{
	static const char *const own[] = {REV_LOCK_FILE, REV_STATE_FILE, REV_STATE_FILE ".tmp",
					  REV_AGENT_RECORD_NAME, NULL};
	char dir[4096], sock[256];
	int rc = path_split(control_socket, dir, sizeof(dir), sock, sizeof(sock));

	if (rc) {
		snprintf(err, errlen, "control.socket %s: not a path to a file", control_socket);
		return rc;
	}
	rc = sdir_open_own(d, dir, own, err, errlen);
	if (rc)
		snprintf(err + strlen(err), errlen - strlen(err), " (check control.socket)");
	return rc;
}

int runtime_open_lock(const char *control_socket, char *err, size_t errlen)
{
	struct sdir d;
	int fd = state_runtime_dir(control_socket, &d, err, errlen);

	if (fd)
		return fd;
	fd = sdir_file(&d, REV_LOCK_FILE, O_RDWR, SFILE_CREATE, 0600, NULL, err, errlen);
	sdir_close(&d);
	return fd;
}

uint64_t proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* after ") " come fields 3.. ; starttime is field 22 */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

int state_write(const char *path, const struct rt_state *st)
{
	cJSON *root = cJSON_CreateObject(), *svcs;
	char dir[4096], name[256], tmp[300], err[512];
	struct sdir d = {.fd = -1};
	bool planted;
	char *text;
	int fd, rc;

	if (!root)
		return -ENOMEM;
	cJSON_AddNumberToObject(root, "agent_pid", st->agent_pid);
	svcs = cJSON_AddObjectToObject(root, "services");
	for (size_t i = 0; i < st->n; i++) {
		const struct svc_record *s = &st->svcs[i];
		cJSON *o = cJSON_AddObjectToObject(svcs, s->name);

		cJSON_AddNumberToObject(o, "pid", s->pid);
		cJSON_AddNumberToObject(o, "pgid", s->pgid);
		cJSON_AddNumberToObject(o, "start_ticks", (double)s->start_ticks);
		cJSON_AddNumberToObject(o, "port", s->port);
		cJSON_AddNumberToObject(o, "restarts", s->restarts);
		cJSON_AddStringToObject(o, "state", s->state);
		cJSON_AddStringToObject(o, "health", s->health);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -ENOMEM;
	rc = path_split(path, dir, sizeof(dir), name, sizeof(name));
	if (!rc)
		rc = sdir_open(&d, dir, 0, 0, err, sizeof(err));
	if (rc)
		goto out;
	/* A fresh temporary (O_EXCL): a name planted in a shared directory is removed, never
	 * written through; then rename() publishes it whole. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = sdir_file(&d, tmp, O_WRONLY, SFILE_FRESH, 0600, &planted, err, sizeof(err));
	if (planted)
		fprintf(stderr,
			"revenant: warning: removed %s/%s, which another user had put there\n",
			dir, tmp);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	{
		size_t len = strlen(text);

		if (write(fd, text, len) != (ssize_t)len)
			rc = -EIO;
		close(fd);
		if (!rc && renameat(d.fd, tmp, d.fd, name))
			rc = -errno;
		if (rc)
			unlinkat(d.fd, tmp, 0);
	}
out:
	if (rc && rc != -EIO)
		fprintf(stderr, "revenant: cannot write %s: %s\n", path,
			d.fd >= 0 || rc == -ENOMEM ? strerror(-rc) : err);
	sdir_close(&d);
	free(text);
	return rc;
}

static int num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
}

static void str(const cJSON *o, const char *k, char *buf, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	snprintf(buf, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int state_read(const char *path, struct rt_state *st)
{
	char err[512], *buf;
	cJSON *root, *svcs, *it;
	ssize_t n;
	int fd;

	memset(st, 0, sizeof(*st));
	/* Only a file of root's counts: a state file decides which processes get signalled. */
	fd = safe_open_read(path, STATE_MAX_BYTES, true, err, sizeof(err));
	if (fd < 0) {
		if (fd != -ENOENT && fd != -EACCES)
			fprintf(stderr, "revenant: warning: ignoring the state file: %s\n", err);
		return fd;
	}
	n = safe_read_all(fd, STATE_MAX_BYTES, &buf);
	close(fd);
	if (n < 0)
		return n;
	root = cJSON_Parse(buf);
	free(buf);
	if (!root)
		return -EINVAL;
	st->agent_pid = num(root, "agent_pid");
	svcs = cJSON_GetObjectItemCaseSensitive(root, "services");
	st->svcs = calloc(cJSON_GetArraySize(svcs) + 1, sizeof(*st->svcs));
	if (!st->svcs) {
		cJSON_Delete(root);
		return -ENOMEM;
	}
	cJSON_ArrayForEach(it, svcs)
	{
		struct svc_record *s = &st->svcs[st->n++];

		snprintf(s->name, sizeof(s->name), "%s", it->string ? it->string : "");
		s->pid = num(it, "pid");
		s->pgid = num(it, "pgid");
		{
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "start_ticks");

			s->start_ticks = cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : 0;
		}
		s->port = num(it, "port");
		s->restarts = num(it, "restarts");
		str(it, "state", s->state, sizeof(s->state));
		str(it, "health", s->health, sizeof(s->health));
	}
	cJSON_Delete(root);
	return 0;
}

void state_free(struct rt_state *st)
{
	free(st->svcs);
	memset(st, 0, sizeof(*st));
}

/* The record's process is still the one recorded: same pid, same start time. */
static bool record_live(const struct svc_record *r)
{
	return r->pid > 1 && r->start_ticks && proc_start_ticks(r->pid) == r->start_ticks;
}

/* The record's process group is the one it had: its leader is the recorded process, or the leader
 * is gone and the group lives on (a pgid is not reused while any member lives). */
static bool group_live(const struct svc_record *r)
{
	uint64_t t;

	if (r->pgid <= 1 || r->pid <= 1 || !r->start_ticks)
		return false;
	if (r->pgid != r->pid)
		return record_live(r);
	t = proc_start_ticks(r->pgid);
	return t ? t == r->start_ticks : true;
}

bool state_record_live(const struct svc_record *r)
{
	return record_live(r);
}

const char *state_service_of(const struct rt_state *st, pid_t pid)
{
	pid_t pgid;

	if (!st || pid <= 0 || !st->n)
		return NULL;
	for (size_t i = 0; i < st->n; i++)
		if (st->svcs[i].pid == pid && record_live(&st->svcs[i]))
			return st->svcs[i].name;
	pgid = getpgid(pid);
	if (pgid <= 1)
		return NULL;
	for (size_t i = 0; i < st->n; i++)
		if (st->svcs[i].pgid == pgid && group_live(&st->svcs[i]))
			return st->svcs[i].name;
	return NULL;
}
