// SPDX-License-Identifier: MIT
/* The in-loop HTTP server. Owns the listening socket, every connection, their buffers and one
 * loop timer armed for the earliest deadline of any connection (lazily: a deadline that moves
 * later is found when the timer fires; one that moves earlier re-arms it). One request per
 * connection; the connection closes after the answer, or stays open as a stream. At the cap the
 * listener is not watched: new clients wait in the kernel's backlog at no cost to the agent. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/httpd.h"
#include "lib/util.h"

#define MAX_ROUTES   32
#define LINGER_MS    2000 /* after an error answer: how long to drain what the client still sends */
#define LINGER_BYTES 65536 /* and how much of it */
#define PAUSE_MS     100   /* no fd even for shedding: how long the listener rests */
#define IN_CAP	     (HTTP_MAX_HEADER + HTTP_MAX_BODY)

enum conn_state {
	C_READING,
	C_WRITING,   /* an answer is being sent; then close */
	C_STREAMING, /* an open-ended answer */
	C_LINGER,    /* answered an error: draining the rest of the request before closing */
	C_DEAD,	     /* to be closed from the timer (never inside a caller's iteration) */
};

struct obuf {
	char *data;
	size_t off, len, cap;
};

struct http_conn {
	struct httpd *h;
	int fd;
	enum conn_state state;
	char *in;
	size_t in_len, in_cap;
	struct obuf out;
	uint64_t deadline; /* 0: none */
	size_t drained;
	bool head;	 /* a HEAD request: the answer has no body */
	uint32_t events; /* what the loop watches now */
	void (*on_close)(void *ctx, struct http_conn *c);
	void *close_ctx;
	struct http_conn *prev, *next;
};

struct route {
	char path[64];
	unsigned methods;
	httpd_handler fn;
	void *ctx;
};

struct httpd {
	struct loop *loop;
	int fd;
	struct httpd_opts o;
	struct route routes[MAX_ROUTES];
	int n_routes;
	struct http_conn *conns;
	struct loop_timer timer;
	uint64_t armed; /* deadline the timer is armed for; 0 = not armed */
	bool paused;	/* the listener rests: not even the spare fd was left */
	bool accepting; /* the listener is watched */
	uint64_t resume;
	struct httpd_stats st;
};

static uint64_t ms_from_now(unsigned ms)
{
	return mono_ns() + (uint64_t)ms * 1000000ull;
}

static void arm(struct httpd *h, uint64_t d)
{
	if (!d || (h->armed && h->armed <= d))
		return;
	h->armed = d;
	loop_timer_at(h->loop, &h->timer, d);
}

static void set_deadline(struct http_conn *c, uint64_t d)
{
	c->deadline = d;
	arm(c->h, d);
}

static void watch(struct http_conn *c, uint32_t events)
{
	if (c->events != events && loop_mod_fd(c->h->loop, c->fd, events) == 0)
		c->events = events;
}

static void listen_update(struct httpd *h);

static void conn_free(struct http_conn *c)
{
	struct httpd *h = c->h;

	if (c->on_close)
		c->on_close(c->close_ctx, c);
	if (c->state == C_STREAMING)
		h->st.streams--;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->st.conns--;
	loop_del_fd(h->loop, c->fd);
	close(c->fd);
	free(c->in);
	free(c->out.data);
	free(c);
	listen_update(h);
}

/* Closed from the timer, soon: callers may be iterating over their own lists of connections. */
static void conn_kill(struct http_conn *c)
{
	if (c->state == C_DEAD)
		return;
	if (c->state == C_STREAMING)
		c->h->st.streams--;
	c->state = C_DEAD;
	loop_del_fd(c->h->loop, c->fd); /* no more wake-ups for it; the fd closes with c */
	set_deadline(c, 1);
}

static int obuf_add(struct obuf *b, const char *p, size_t n, size_t limit)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len - b->off + n > limit)
		return -ENOBUFS;
	if (b->len + n > b->cap && b->off) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *d;

		while (cap < b->len + n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void after_sent(struct http_conn *c);

/* Send what the socket takes. 0 (all sent, or the rest waits for EPOLLOUT) or -errno (gone). */
static int flush(struct http_conn *c)
{
	struct obuf *b = &c->out;
	bool progress = false;

	while (b->off < b->len) {
		ssize_t n =
		    send(c->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return -EPIPE;
		b->off += n;
		progress = true;
	}
	if (b->off < b->len) {
		/* A stream also watches for its reader leaving; an answer is sent to a client
		 * that may have shut down its side after the request (printf | nc). */
		watch(c, c->state == C_STREAMING ? EPOLLOUT | EPOLLRDHUP : EPOLLOUT);
		if (progress || !c->deadline)
			set_deadline(c, ms_from_now(c->h->o.write_ms));
		return 0;
	}
	b->off = b->len = 0;
	after_sent(c);
	return 0;
}

static void after_sent(struct http_conn *c)
{
	if (c->state == C_WRITING) {
		conn_kill(c);
	} else if (c->state == C_LINGER) {
		/* The client may still be sending (we answered before reading it all): read it
		 * away, or closing with unread bytes would reset the connection and the client
		 * could lose the answer. */
		shutdown(c->fd, SHUT_WR);
		watch(c, EPOLLIN | EPOLLRDHUP);
		set_deadline(c, ms_from_now(LINGER_MS));
	} else if (c->state == C_STREAMING) {
		/* Nothing queued: a quiet stream has no deadline; a hang-up still wakes us. */
		watch(c, EPOLLRDHUP);
		c->deadline = 0;
	}
}

static void queue_head(struct http_conn *c, int status, const char *ctype, const char *extra,
		       long long len)
{
	char head[1024];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n", status, http_reason(status));
	if (ctype)
		n += snprintf(head + n, sizeof(head) - n, "Content-Type: %s\r\n", ctype);
	if (len >= 0)
		n += snprintf(head + n, sizeof(head) - n, "Content-Length: %lld\r\n", len);
	n += snprintf(head + n, sizeof(head) - n,
		      "Connection: close\r\nCache-Control: no-store\r\n"
		      "X-Content-Type-Options: nosniff\r\n");
	if ((size_t)n < sizeof(head))
		obuf_add(&c->out, head, n, SIZE_MAX);
	if (extra)
		obuf_add(&c->out, extra, strlen(extra), SIZE_MAX);
	obuf_add(&c->out, "\r\n", 2, SIZE_MAX);
}

void httpd_respond(struct http_conn *c, int status, const char *ctype, const char *extra,
		   const char *body, size_t len)
{
	if (c->state != C_READING)
		return;
	c->state = status >= 400 ? C_LINGER : C_WRITING;
	queue_head(c, status, ctype, extra, (long long)len);
	if (len && !c->head && obuf_add(&c->out, body, len, SIZE_MAX)) {
		conn_kill(c);
		return;
	}
	c->deadline = 0;
	if (flush(c))
		conn_kill(c);
}

void httpd_respondf(struct http_conn *c, int status, const char *ctype, const char *extra,
		    const char *fmt, ...)
{
	char *body = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n < 0) {
		conn_kill(c);
		return;
	}
	httpd_respond(c, status, ctype, extra, body, n);
	free(body);
}

int httpd_stream_start(struct http_conn *c, const char *ctype, const char *extra)
{
	if (c->state != C_READING)
		return -EINVAL;
	if (c->h->st.streams >= c->h->o.max_streams)
		return -EBUSY;
	c->state = C_STREAMING;
	c->h->st.streams++;
	queue_head(c, 200, ctype, extra, -1);
	c->deadline = 0;
	if (flush(c)) {
		conn_kill(c);
		return -EPIPE;
	}
	return 0;
}

int httpd_stream_write(struct http_conn *c, const char *data, size_t len)
{
	bool blocked;

	if (c->state != C_STREAMING)
		return -EPIPE;
	/* Bytes still queued: the socket was full and EPOLLOUT will say when it drains; trying
	 * send() now would only cost a syscall per event for a stuck reader. */
	blocked = c->out.off < c->out.len;
	if (obuf_add(&c->out, data, len, c->h->o.stream_buf)) {
		/* Too far behind: never let one reader hold memory or the loop hostage. */
		c->h->st.dropped++;
		conn_kill(c);
		return -EPIPE;
	}
	if (!blocked && flush(c)) {
		conn_kill(c);
		return -EPIPE;
	}
	return 0;
}

void httpd_on_close(struct http_conn *c, void (*fn)(void *ctx, struct http_conn *c), void *ctx)
{
	c->on_close = fn;
	c->close_ctx = ctx;
}

void httpd_stats(const struct httpd *h, struct httpd_stats *st)
{
	*st = h->st;
	st->max_conns = h->o.max_conns;
}

int httpd_route(struct httpd *h, const char *path, unsigned methods, httpd_handler fn, void *ctx)
{
	struct route *r;

	if (h->n_routes == MAX_ROUTES || strlen(path) >= sizeof(r->path))
		return -ENOSPC;
	r = &h->routes[h->n_routes++];
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->methods = methods;
	r->fn = fn;
	r->ctx = ctx;
	return 0;
}

void httpd_unroute(struct httpd *h, void *ctx)
{
	int w = 0;

	for (int i = 0; h && i < h->n_routes; i++)
		if (h->routes[i].ctx != ctx)
			h->routes[w++] = h->routes[i];
	if (h)
		h->n_routes = w;
}

static void dispatch(struct http_conn *c, const struct http_req *req)
{
	struct httpd *h = c->h;
	unsigned m = req->method == HTTP_HEAD ? HTTP_GET : req->method;

	c->head = req->method == HTTP_HEAD;

	for (int i = 0; i < h->n_routes; i++) {
		const struct route *r = &h->routes[i];

		if (strcmp(r->path, req->path))
			continue;
		if (!(r->methods & m)) {
			char allow[64];

			snprintf(allow, sizeof(allow), "Allow: %s%s\r\n",
				 r->methods & HTTP_GET ? "GET, HEAD" : "",
				 r->methods & HTTP_POST
				     ? (r->methods & HTTP_GET ? ", POST" : "POST")
				     : "");
			httpd_respondf(c, 405, "text/plain; charset=utf-8", allow,
				       "%s is not allowed on %s\n",
				       req->method == HTTP_POST ? "POST" : "GET", req->path);
			return;
		}
		r->fn(r->ctx, c, req, c->in + req->header_len);
		if (c->state == C_READING) /* a handler that said nothing: never leave it hanging */
			httpd_respondf(c, 500, "text/plain; charset=utf-8", NULL, "no answer\n");
		return;
	}
	httpd_respondf(c, 404, "text/plain; charset=utf-8", NULL, "nothing at %s\n", req->path);
}

static void on_readable(struct http_conn *c)
{
	struct http_req req;
	bool eof = false;
	int rc;

	while (!eof) {
		ssize_t n;

		if (c->in_len == c->in_cap) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 2048;
			char *p;

			if (c->in_cap >= IN_CAP)
				break; /* full: the parser says which limit was passed */
			if (cap > IN_CAP)
				cap = IN_CAP;
			p = realloc(c->in, cap);
			if (!p) {
				conn_kill(c);
				return;
			}
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			conn_kill(c);
			return;
		}
		/* A client may shut down its side after the request and still read the answer. */
		eof = n == 0;
		c->in_len += n;
	}
	rc = http_parse(c->in, c->in_len, &req);
	if (eof && (rc == HTTP_INCOMPLETE ||
		    (rc == 200 && c->in_len < req.header_len + req.content_length))) {
		conn_kill(c); /* gone before its request was complete */
		return;
	}
	if (rc == HTTP_INCOMPLETE) {
		if (c->in_len >= IN_CAP) /* cannot happen: the parser bounds the head */
			httpd_respondf(c, 431, "text/plain; charset=utf-8", NULL, "too large\n");
		return;
	}
	if (rc != 200) {
		httpd_respondf(c, rc, "text/plain; charset=utf-8", NULL, "%s\n", http_reason(rc));
		return;
	}
	if (c->in_len < req.header_len + req.content_length)
		return; /* the body is still coming */
	dispatch(c, &req);
}

static void on_linger(struct http_conn *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		c->drained += n > 0 ? n : 0;
		if (n <= 0 || c->drained > LINGER_BYTES) {
			conn_kill(c);
			return;
		}
	}
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct http_conn *c = ctx;

	(void)l;
	(void)fd;
	switch (c->state) {
	case C_READING:
		on_readable(c);
		break;
	case C_LINGER:
		if (c->out.off < c->out.len && (events & EPOLLOUT) && flush(c))
			conn_kill(c);
		else if (c->out.off == c->out.len)
			on_linger(c);
		else if (events & (EPOLLERR | EPOLLHUP))
			conn_kill(c);
		break;
	case C_WRITING:
	case C_STREAMING:
		if (events & (EPOLLERR | EPOLLHUP) ||
		    (c->state == C_STREAMING && (events & EPOLLRDHUP)))
			conn_kill(c); /* the reader left: nothing more to send it */
		else if ((events & EPOLLOUT) && flush(c))
			conn_kill(c);
		break;
	case C_DEAD:
		break;
	}
}

/* Watch the listener unless it rests (no fd) or the cap is reached: then further connections
 * wait in the kernel's backlog, costing the agent nothing, until a slot frees. */
static void listen_update(struct httpd *h)
{
	bool want = !h->paused && h->st.conns < h->o.max_conns;

	if (want != h->accepting && loop_mod_fd(h->loop, h->fd, want ? EPOLLIN : 0) == 0) {
		h->accepting = want;
		if (!want && !h->paused)
			h->st.full++;
	}
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ctx)
{
	struct httpd *h = ctx;

	(void)events;
	for (;;) {
		int fd = accept_shed(lfd, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct http_conn *c;

		if (fd == -ECONNABORTED) {
			h->st.shed++;
			continue;
		}
		if (fd == -EMFILE) {
			/* Not even the spare fd: rest the listener instead of spinning on it. */
			h->paused = true;
			h->resume = ms_from_now(PAUSE_MS);
			arm(h, h->resume);
			listen_update(h);
			return;
		}
		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c || loop_add_fd(l, fd, EPOLLIN | EPOLLRDHUP, on_conn, c)) {
			free(c);
			close(fd);
			continue;
		}
		c->h = h;
		c->fd = fd;
		c->events = EPOLLIN | EPOLLRDHUP;
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->st.conns++;
		/* The whole request within request_ms of the accept: a client sending a byte at a
		 * time gains nothing. */
		set_deadline(c, ms_from_now(h->o.request_ms));
		if (h->st.conns >= h->o.max_conns) {
			listen_update(h);
			return;
		}
	}
}

static void on_timer(struct loop *l, void *ctx)
{
	struct httpd *h = ctx;
	uint64_t now = mono_ns(), next = 0;
	struct http_conn *c, *nx;

	h->armed = 0;
	(void)l;
	if (h->paused && h->resume <= now) {
		h->paused = false;
		listen_update(h);
	} else if (h->paused) {
		next = h->resume;
	}
	for (c = h->conns; c; c = nx) {
		nx = c->next;
		if (c->deadline && c->deadline <= now) {
			if (c->state != C_DEAD)
				h->st.timeouts++;
			conn_free(c);
			continue;
		}
		if (c->deadline && (!next || c->deadline < next))
			next = c->deadline;
	}
	arm(h, next);
}

static int default_max_conns(void)
{
	struct rlimit rl;
	rlim_t q;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 64;
	/* The agent's own fds (pidfds, probes, BPF) keep three quarters of the limit. */
	q = rl.rlim_cur / 4;
	return q < 8 ? 8 : q < HTTPD_MAX_CONNS ? (int)q : HTTPD_MAX_CONNS;
}

struct httpd *httpd_open(struct loop *l, const char *listen_at, const struct httpd_opts *o,
			 char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char host[256], *colon;
	struct httpd *h;
	int one = 1, rc;

	snprintf(host, sizeof(host), "%s", listen_at);
	colon = strrchr(host, ':');
	if (!colon) {
		snprintf(err, errlen, "metrics.listen %s is not host:port", listen_at);
		return NULL;
	}
	*colon = 0;
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "metrics.listen %s: %s", listen_at, gai_strerror(rc));
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = l;
	h->o = o ? *o : (struct httpd_opts){0};
	if (!h->o.max_conns)
		h->o.max_conns = default_max_conns();
	if (!h->o.request_ms)
		h->o.request_ms = HTTPD_REQUEST_MS;
	if (!h->o.write_ms)
		h->o.write_ms = HTTPD_WRITE_MS;
	if (!h->o.max_streams)
		h->o.max_streams = HTTPD_MAX_STREAMS;
	if (!h->o.stream_buf)
		h->o.stream_buf = HTTPD_STREAM_BUF;
	loop_timer_init(&h->timer, on_timer, h);
	accept_spare_init();
	h->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd >= 0)
		setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (h->fd < 0 || bind(h->fd, ai->ai_addr, ai->ai_addrlen) || listen(h->fd, 128) ||
	    loop_add_fd(l, h->fd, EPOLLIN, on_accept, h)) {
		snprintf(err, errlen,
			 "cannot serve metrics on %s: %s (change or empty metrics.listen)",
			 listen_at, strerror(errno));
		if (h->fd >= 0)
			close(h->fd);
		free(h);
		h = NULL;
	}
	if (h)
		h->accepting = true;
	freeaddrinfo(ai);
	return h;
}

void httpd_close(struct httpd *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_free(h->conns);
	loop_timer_cancel(h->loop, &h->timer);
	loop_del_fd(h->loop, h->fd);
	close(h->fd);
	free(h);
}
