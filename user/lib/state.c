// SPDX-License-Identifier: MIT
/* The runtime state file: written by the agent with write-to-temp + rename, read by everyone. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "lib/state.h"
#include "lib/util.h"

void state_runtime_path(const char *control_socket, const char *name, char *buf, size_t len)
{
	const char *slash = strrchr(control_socket, '/');
	int dirlen = slash ? (int)(slash - control_socket) : 1;

	if (!slash)
		control_socket = ".";
	else if (dirlen == 0)
		control_socket = ""; /* a socket in / : "/NAME", not "//NAME" */
	snprintf(buf, len, "%.*s/%s", dirlen, control_socket, name);
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
	char tmp[REV_PATH_BUF];
	char *text;
	int fd, rc = 0;

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
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		size_t len = strlen(text);

		if (write(fd, text, len) != (ssize_t)len)
			rc = -EIO;
		close(fd);
		if (!rc && rename(tmp, path))
			rc = -errno;
		if (rc)
			unlink(tmp);
	}
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
	char buf[1 << 16];
	cJSON *root, *svcs, *it;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(st, 0, sizeof(*st));
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	root = cJSON_Parse(buf);
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

const char *state_service_of(const struct rt_state *st, pid_t pid)
{
	pid_t pgid;

	if (!st || pid <= 0 || !st->n)
		return NULL;
	for (size_t i = 0; i < st->n; i++)
		if (st->svcs[i].pid == pid)
			return st->svcs[i].name;
	pgid = getpgid(pid);
	if (pgid <= 1)
		return NULL;
	for (size_t i = 0; i < st->n; i++)
		if (st->svcs[i].pgid == pgid)
			return st->svcs[i].name;
	return NULL;
}
