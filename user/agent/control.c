// SPDX-License-Identifier: MIT
/* The control socket, both ends. The server accepts in the loop (at most CONTROL_MAX_CLIENTS at
 * once, the others wait in the backlog; surviving fd exhaustion), checks the peer is root, reads one bounded message within a
 * deadline, and answers now or when the supervisor finishes (stop, start, restart); a large answer
 * goes out in chunks as the client reads them. One loop timer covers every client's deadline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/control.h"
#include "lib/safefs.h"
#include "lib/state.h"
#include "lib/util.h"

#define CHUNK (CONTROL_MAX_MSG - 1) /* payload of one chunk message, after its marker byte */
#define PAUSE_MS 100		     /* no fd even to shed a connection: the listener rests */

struct client {
	struct control *ctl;
	int fd;
	uid_t uid; /* SO_PEERCRED at accept */
	bool waiting; /* a deferred reply is owed */
	char *out;    /* the reply being sent; then the client is dropped */
	size_t out_len, out_off;
	uint64_t deadline; /* 0: none (waiting for the supervisor) */
	struct client *next;
};

struct control {
	struct loop *loop;
	struct supervisor *sup;
	int fd;
	char path[108];
	struct client *clients;
	int n_clients;
	struct loop_timer timer;
	uint64_t armed; /* the timer's deadline, 0 = not armed; later deadlines are found when it fires */
	bool paused;	/* no fd even to shed a connection: the listener rests */
	bool accepting; /* the listener is watched */
	uint64_t resume;
};

static uint64_t ms_from_now(unsigned ms)
{
	return mono_ns() + (uint64_t)ms * 1000000ull;
}

static void arm(struct control *c, uint64_t d)
{
	if (!d || (c->armed && c->armed <= d))
		return;
	c->armed = d;
	loop_timer_at(c->loop, &c->timer, d);
}

static void set_deadline(struct client *cl, uint64_t d)
{
	cl->deadline = d;
	arm(cl->ctl, d);
}

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

/* For a refusal on a connection that is dropped right after: small, a fresh socket takes it. */
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

/* The listener is watched unless it rests (no fd left) or the cap is reached: then clients wait
 * in the backlog (and connect() fails at once when that is full too). */
static void listen_update(struct control *c)
{
	bool want = !c->paused && c->n_clients < CONTROL_MAX_CLIENTS;

	if (want != c->accepting && loop_mod_fd(c->loop, c->fd, want ? EPOLLIN : 0) == 0)
		c->accepting = want;
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
	free(cl->out);
	free(cl);
	c->n_clients--;
	listen_update(c);
}

/* One message of the reply: all of it when it fits, else the next chunk with its marker. */
static ssize_t send_next(struct client *cl)
{
	size_t left = cl->out_len - cl->out_off;
	char mark;
	struct iovec iov[2];
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t n;

	if (cl->out_len < CONTROL_MAX_MSG)
		return send(cl->fd, cl->out, cl->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
	mark = left > CHUNK ? CONTROL_CHUNK_MORE : CONTROL_CHUNK_LAST;
	iov[0] = (struct iovec){.iov_base = &mark, .iov_len = 1};
	iov[1] = (struct iovec){.iov_base = cl->out + cl->out_off,
				.iov_len = left > CHUNK ? CHUNK : left};
	n = sendmsg(cl->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n > 0 ? n - 1 : n;
}

/* Send what the socket takes; the rest when it is writable again. Drops the client when done. */
static void flush(struct client *cl)
{
	struct control *c = cl->ctl;
	bool progress = false;

	while (cl->out_off < cl->out_len) {
		ssize_t n = send_next(cl);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			drop_client(c, cl);
			return;
		}
		cl->out_off += cl->out_len < CONTROL_MAX_MSG ? cl->out_len : (size_t)n;
		progress = true;
	}
	if (cl->out_off == cl->out_len) {
		drop_client(c, cl);
		return;
	}
	loop_mod_fd(c->loop, cl->fd, EPOLLOUT);
	if (progress || !cl->deadline)
		set_deadline(cl, ms_from_now(CONTROL_WRITE_MS));
}

static void reply(struct client *cl, cJSON *resp)
{
	char *s = cJSON_PrintUnformatted(resp);

	cJSON_Delete(resp);
	if (!s) {
		drop_client(cl->ctl, cl);
		return;
	}
	cl->out = s;
	cl->out_len = strlen(s);
	cl->out_off = 0;
	cl->deadline = 0;
	flush(cl);
}

static void on_reply(void *ctx, cJSON *resp)
{
	struct client *cl = ctx;

	cl->waiting = false;
	reply(cl, resp);
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
	if (cl->out) {
		if (events & (EPOLLHUP | EPOLLERR))
			drop_client(c, cl);
		else
			flush(cl);
		return;
	}
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
		reply(cl, error_resp("not permitted: the control socket serves root only"));
		return;
	}
	req = control_parse_request(buf, (size_t)n, err, sizeof(err));
	free(buf);
	if (!req) {
		reply(cl, error_resp(err));
		return;
	}
	cl->deadline = 0; /* answered now, or when the supervisor is done: no request deadline */
	resp = c->sup ? sup_control(c->sup, req, on_reply, cl) : error_resp("no supervisor");
	cJSON_Delete(req);
	if (resp) {
		reply(cl, resp);
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
		int cfd = accept_shed(fd, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *cl;

		if (cfd == -ECONNABORTED)
			continue; /* shed: no fd to spare for it */
		if (cfd == -EMFILE) {
			c->paused = true;
			c->resume = ms_from_now(PAUSE_MS);
			arm(c, c->resume);
			listen_update(c);
			return;
		}
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
		c->n_clients++;
		set_deadline(cl, ms_from_now(CONTROL_REQUEST_MS));
		if (c->n_clients >= CONTROL_MAX_CLIENTS) {
			listen_update(c);
			return;
		}
	}
}

static void on_timer(struct loop *l, void *ctx)
{
	struct control *c = ctx;
	uint64_t now = mono_ns(), next = 0;
	struct client *cl, *nx;

	c->armed = 0;
	(void)l;
	if (c->paused && c->resume <= now) {
		c->paused = false;
		listen_update(c);
	} else if (c->paused) {
		next = c->resume;
	}
	for (cl = c->clients; cl; cl = nx) {
		nx = cl->next;
		if (cl->deadline && cl->deadline <= now) {
			drop_client(c, cl); /* silent or not reading its answer */
			continue;
		}
		if (cl->deadline && (!next || cl->deadline < next))
			next = cl->deadline;
	}
	arm(c, next);
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
	loop_timer_init(&c->timer, on_timer, c);
	accept_spare_init();
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
	rc = c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(c->fd, 64);
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
	c->accepting = true;
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
	loop_timer_cancel(c->loop, &c->timer);
	loop_del_fd(c->loop, c->fd);
	close(c->fd);
	unlink(c->path);
	free(c);
}

static int wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint64_t now = mono_ns();
	int p;

	if (now >= deadline)
		return -ETIMEDOUT;
	p = poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
	return p < 0 ? -errno : p == 0 ? -ETIMEDOUT : 0;
}

/* One message into buf (cap bytes). Its length, or -errno; -EBADMSG when it did not fit. */
static ssize_t recv_msg(int fd, char *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap, MSG_TRUNC);

	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	return (size_t)n > cap ? -EBADMSG : n;
}

/* The reply: one JSON message, or chunks (marker byte, payload) put back together. */
static int read_reply(int fd, uint64_t deadline, char **out, size_t *out_len)
{
	char *buf = malloc(CONTROL_MAX_MSG), *all = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;
		char *p;

		if ((rc = wait_readable(fd, deadline)))
			break;
		n = recv_msg(fd, buf, CONTROL_MAX_MSG);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (!all && buf[0] != CONTROL_CHUNK_MORE && buf[0] != CONTROL_CHUNK_LAST) {
			/* Not chunked: the whole reply (what every agent sends when it fits). */
			*out = buf;
			*out_len = n;
			return 0;
		}
		if (buf[0] != CONTROL_CHUNK_MORE && buf[0] != CONTROL_CHUNK_LAST) {
			rc = -EBADMSG;
			break;
		}
		if (len + n > CONTROL_MAX_REPLY) {
			rc = -EMSGSIZE;
			break;
		}
		p = realloc(all, len + n);
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		all = p;
		memcpy(all + len, buf + 1, n - 1);
		len += n - 1;
		if (buf[0] == CONTROL_CHUNK_LAST) {
			free(buf);
			*out = all;
			*out_len = len;
			return 0;
		}
	}
	free(buf);
	free(all);
	return rc;
}

int control_call(const char *path, const cJSON *req, int timeout_ms, cJSON **resp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *msg, *buf = NULL;
	size_t len = 0;
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
	if (!rc)
		rc = read_reply(fd, mono_ns() + (uint64_t)timeout_ms * 1000000ull, &buf, &len);
	if (!rc) {
		*resp = cJSON_ParseWithLength(buf, len);
		if (!*resp)
			rc = -EBADMSG;
	}
	free(buf);
	close(fd);
	return rc;
}
