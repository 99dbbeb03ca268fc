// SPDX-License-Identifier: MIT
/* The control socket, both ends. The server accepts in the loop, checks the peer is root, reads
 * one bounded message, and answers now or when the supervisor finishes (stop, start, restart). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/control.h"
#include "lib/safefs.h"
#include "lib/state.h"
#include "lib/util.h"

struct client {
	struct control *ctl;
	int fd;
	uid_t uid; /* SO_PEERCRED at accept */
	bool waiting; /* a deferred reply is owed */
	struct client *next;
};

struct control {
	struct loop *loop;
	struct supervisor *sup;
	int fd;
	char path[108];
	struct client *clients;
};

cJSON *control_parse_request(const char *buf, size_t len, char *err, size_t errlen)
{
	cJSON *req;
	const cJSON *cmd;

	if (len == 0 || len >= CONTROL_MAX_MSG) {
		snprintf(err, errlen, "request of %zu bytes (1..%d allowed)", len, CONTROL_MAX_MSG - 1);
		return NULL;
	}
	{
		const char *end = NULL;

		req = cJSON_ParseWithLengthOpts(buf, len, &end, false);
		while (req && end < buf + len && (*end == ' ' || *end == '\t' || *end == '\r' ||
						  *end == '\n'))
			end++;
		if (!req || end != buf + len) {
			cJSON_Delete(req);
			snprintf(err, errlen, "request is not valid JSON (one JSON object per message)");
			return NULL;
		}
	}
	cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	if (!cJSON_IsObject(req) || !cJSON_IsString(cmd)) {
		snprintf(err, errlen, "request must be an object with a string \"cmd\"");
		cJSON_Delete(req);
		return NULL;
	}
	return req;
}

static void send_json(int fd, cJSON *resp)
{
	char *s = cJSON_PrintUnformatted(resp);

	cJSON_Delete(resp);
	if (!s)
		return;
	if (send(fd, s, strlen(s), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client went away: nothing to tell */
	}
	free(s);
}

static void drop_client(struct control *c, struct client *cl)
{
	struct client **pp = &c->clients;

	while (*pp && *pp != cl)
		pp = &(*pp)->next;
	if (*pp)
		*pp = cl->next;
	if (cl->waiting)
		sup_cancel_reply(c->sup, cl);
	loop_del_fd(c->loop, cl->fd);
	close(cl->fd);
	free(cl);
}

static void on_reply(void *ctx, cJSON *resp)
{
	struct client *cl = ctx;

	cl->waiting = false;
	send_json(cl->fd, resp);
	drop_client(cl->ctl, cl);
}

static cJSON *error_resp(const char *msg)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddBoolToObject(r, "ok", false);
	cJSON_AddStringToObject(r, "error", msg);
	return r;
}

static void on_client(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct client *cl = ctx;
	struct control *c = cl->ctl;
	char *buf;
	ssize_t n;
	char err[160];
	cJSON *req, *resp;

	(void)l;
	if (cl->waiting) {
		/* Only a hang-up can come now; a second request on one connection is not served. */
		if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
			drop_client(c, cl);
		else
			loop_mod_fd(c->loop, fd, EPOLLRDHUP);
		return;
	}
	buf = malloc(CONTROL_MAX_MSG);
	if (!buf) {
		drop_client(c, cl);
		return;
	}
	n = recv(fd, buf, CONTROL_MAX_MSG, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(buf);
		return;
	}
	if (n <= 0) {
		free(buf);
		drop_client(c, cl);
		return;
	}
	if (cl->uid != 0) {
		/* Refuse only after reading the request: closing with it unread makes the kernel
		 * reset the connection, and the client would see ECONNRESET, not this answer. */
		free(buf);
		send_json(fd, error_resp("not permitted: the control socket serves root only"));
		drop_client(c, cl);
		return;
	}
	req = control_parse_request(buf, (size_t)n, err, sizeof(err));
	free(buf);
	if (!req) {
		send_json(fd, error_resp(err));
		drop_client(c, cl);
		return;
	}
	resp = c->sup ? sup_control(c->sup, req, on_reply, cl) : error_resp("no supervisor");
	cJSON_Delete(req);
	if (resp) {
		send_json(fd, resp);
		drop_client(c, cl);
		return;
	}
	cl->waiting = true;
	loop_mod_fd(c->loop, fd, EPOLLRDHUP);
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct control *c = ctx;

	(void)events;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *cl;

		if (cfd < 0)
			return;
		/* The socket's mode already keeps others out; the peer's credentials are the
		 * check that does not depend on the file system. */
		if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
			cred.uid = (uid_t)-1; /* unknown peer: refused when its request comes */
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(cfd);
			continue;
		}
		cl->ctl = c;
		cl->fd = cfd;
		cl->uid = cred.uid;
		if (loop_add_fd(l, cfd, EPOLLIN | EPOLLRDHUP, on_client, cl)) {
			close(cfd);
			free(cl);
			continue;
		}
		cl->next = c->clients;
		c->clients = cl;
	}
}

struct control *control_open(struct loop *l, const char *path, struct supervisor *sup, char *err,
			     size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct control *c = calloc(1, sizeof(*c));
	struct sdir d;
	mode_t old;
	int rc;

	if (!c) {
		snprintf(err, errlen, "cannot open the control socket: out of memory");
		return NULL;
	}
	c->loop = l;
	c->sup = sup;
	c->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control.socket %s is too long for a unix socket", path);
		goto fail;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* The runtime directory: root's, 0700 when it is the agent's alone, refused when others
	 * can write it and it is not sticky (the agent's lock already checked it). */
	rc = state_runtime_dir(path, &d, err, errlen);
	if (rc)
		goto fail;
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* We hold the agent lock for this socket, so an existing file is a dead agent's (or a name
	 * planted in a shared directory): it goes. unlinkat() never follows a link. */
	unlinkat(d.fd, strrchr(path, '/') ? strrchr(path, '/') + 1 : path, 0);
	sdir_close(&d);
	/* Born 0600: no chmod(path) afterwards, which would follow a link put in its place. */
	old = umask(0177);
	rc = c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(c->fd, 16);
	umask(old);
	if (rc) {
		snprintf(err, errlen, "cannot listen on %s: %s (check control.socket)", path,
			 strerror(errno));
		goto fail;
	}
	if (loop_add_fd(l, c->fd, EPOLLIN, on_accept, c)) {
		snprintf(err, errlen, "cannot watch %s", path);
		goto fail;
	}
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	while (c->clients) {
		struct client *cl = c->clients;

		if (cl->waiting)
			send_json(cl->fd, error_resp("the agent stopped before finishing"));
		drop_client(c, cl);
	}
	loop_del_fd(c->loop, c->fd);
	close(c->fd);
	unlink(c->path);
	free(c);
}

int control_call(const char *path, const cJSON *req, int timeout_ms, cJSON **resp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pollfd pfd;
	char *msg, *buf;
	ssize_t n;
	int fd, rc = 0;

	*resp = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		/* AF_UNIX reports a full backlog as EAGAIN at once: the agent is not accepting. */
		rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
		close(fd);
		return rc;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	msg = cJSON_PrintUnformatted(req);
	if (!msg || send(fd, msg, strlen(msg), MSG_NOSIGNAL) < 0)
		rc = msg ? -errno : -ENOMEM;
	free(msg);
	/* The server may have answered (a refusal) and closed before we sent: read its answer. */
	if (rc == -EPIPE)
		rc = 0;
	pfd = (struct pollfd){.fd = fd, .events = POLLIN};
	if (!rc) {
		int p = poll(&pfd, 1, timeout_ms);

		rc = p < 0 ? -errno : p == 0 ? -ETIMEDOUT : 0;
	}
	buf = rc ? NULL : malloc(CONTROL_MAX_MSG);
	if (!rc && !buf)
		rc = -ENOMEM;
	if (!rc) {
		n = recv(fd, buf, CONTROL_MAX_MSG - 1, 0);
		if (n <= 0) {
			rc = n < 0 ? -errno : -ECONNRESET;
		} else {
			*resp = cJSON_ParseWithLength(buf, n);
			if (!*resp)
				rc = -EBADMSG;
		}
	}
	free(buf);
	close(fd);
	return rc;
}
