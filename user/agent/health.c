// SPDX-License-Identifier: MIT
/* Health probes as small state machines in the loop: connect, (send GET, read status line), done.
 * Nothing blocks; a timer bounds every probe by timeout_ms. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/health.h"

struct probe {
	struct loop *loop;
	struct loop_timer timer;
	probe_done_cb cb;
	void *ctx;
	int fd;
	int port;
	bool http;
	bool sent;
	char req[512];
	char resp[256];
	size_t resp_len;
};

/* "HTTP/1.x NNN" followed by a space, CR, LF or the end: exactly, nothing looser. */
int probe_http_status(const char *buf, size_t len)
{
	if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !isdigit((unsigned char)buf[7]) ||
	    buf[8] != ' ')
		return -1;
	for (int i = 9; i < 12; i++)
		if (!isdigit((unsigned char)buf[i]))
			return -1;
	if (len > 12 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
		return -1;
	return (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
}

static void finish(struct probe *p, bool ok, const char *detail)
{
	probe_done_cb cb = p->cb;
	void *ctx = p->ctx;

	probe_cancel(p);
	cb(ctx, ok, detail);
}

static void on_timeout(struct loop *l, void *ctx)
{
	struct probe *p = ctx;
	char d[96];

	(void)l;
	snprintf(d, sizeof(d), "no answer from 127.0.0.1:%d within the timeout", p->port);
	finish(p, false, d);
}

static void on_io(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct probe *p = ctx;
	char d[160];
	int err = 0;
	socklen_t el = sizeof(err);

	(void)l;
	if (!p->sent) {
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			snprintf(d, sizeof(d), "connect to 127.0.0.1:%d: %s", p->port,
				 strerror(err ? err : ECONNREFUSED));
			finish(p, false, d);
			return;
		}
		if (!p->http) {
			snprintf(d, sizeof(d), "tcp 127.0.0.1:%d accepts connections", p->port);
			finish(p, true, d);
			return;
		}
		if (send(fd, p->req, strlen(p->req), MSG_NOSIGNAL) < 0) {
			snprintf(d, sizeof(d), "send to 127.0.0.1:%d: %s", p->port, strerror(errno));
			finish(p, false, d);
			return;
		}
		p->sent = true;
		loop_mod_fd(p->loop, fd, EPOLLIN);
		return;
	}
	for (;;) {
		ssize_t n = recv(fd, p->resp + p->resp_len, sizeof(p->resp) - 1 - p->resp_len, 0);
		int code;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n > 0)
			p->resp_len += n;
		if (n > 0 && p->resp_len < 16 && p->resp_len < sizeof(p->resp) - 1)
			continue;
		code = probe_http_status(p->resp, p->resp_len);
		if (code < 0) {
			snprintf(d, sizeof(d), "127.0.0.1:%d did not answer HTTP (%s)", p->port,
				 n < 0 ? strerror(errno) : "bad status line");
			finish(p, false, d);
		} else {
			snprintf(d, sizeof(d), "HTTP %d from 127.0.0.1:%d", code, p->port);
			finish(p, code >= 200 && code < 400, d);
		}
		return;
	}
}

struct probe *probe_start(struct loop *l, const struct health_config *h, int port,
			  probe_done_cb cb, void *ctx)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct probe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->loop = l;
	p->cb = cb;
	p->ctx = ctx;
	p->port = port;
	p->http = h->http != NULL;
	if (p->http)
		snprintf(p->req, sizeof(p->req),
			 "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: revenant\r\n"
			 "Connection: close\r\n\r\n",
			 h->http, port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		goto fail;
	if (connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
		goto fail;
	if (loop_add_fd(l, p->fd, EPOLLOUT, on_io, p))
		goto fail;
	loop_timer_init(&p->timer, on_timeout, p);
	loop_timer_after_ms(l, &p->timer, h->timeout_ms);
	return p;
fail:
	{
		int e = errno;

		if (p->fd >= 0)
			close(p->fd);
		free(p);
		errno = e;
	}
	return NULL;
}

void probe_cancel(struct probe *p)
{
	if (!p)
		return;
	loop_timer_cancel(p->loop, &p->timer);
	loop_del_fd(p->loop, p->fd);
	close(p->fd);
	free(p);
}
