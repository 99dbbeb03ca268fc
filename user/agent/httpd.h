/* SPDX-License-Identifier: MIT */
/* The agent's HTTP server, inside the one loop: non-blocking, a cap on connections and on
 * streaming clients, a deadline for every request and every write, bounded buffers, survival of
 * fd exhaustion. Serves the metrics endpoint and the status page (routes registered by both). */
#ifndef REVENANT_HTTPD_H
#define REVENANT_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/http.h"
#include "lib/loop.h"

#define HTTPD_MAX_CONNS	  256	       /* at most; lower when RLIMIT_NOFILE is small */
#define HTTPD_REQUEST_MS  10000	       /* a request (head and body) must arrive within this */
#define HTTPD_WRITE_MS	  10000	       /* a response must make progress at least this often */
#define HTTPD_MAX_STREAMS 64	       /* event-stream clients at once */
#define HTTPD_STREAM_BUF  (512 * 1024) /* a stream client this far behind is dropped */

struct httpd;
struct http_conn;

struct httpd_opts {
	int max_conns;	     /* 0: HTTPD_MAX_CONNS, or a quarter of RLIMIT_NOFILE if lower; more
			      * clients wait in the kernel's backlog until one leaves */
	unsigned request_ms; /* 0: HTTPD_REQUEST_MS */
	unsigned write_ms;   /* 0: HTTPD_WRITE_MS */
	int max_streams;     /* 0: HTTPD_MAX_STREAMS */
	size_t stream_buf;   /* 0: HTTPD_STREAM_BUF */
};

/* A route's handler: answers with httpd_respond() or starts a stream, before it returns. body is
 * the request's body (req->content_length bytes, not NUL-terminated). */
typedef void (*httpd_handler)(void *ctx, struct http_conn *c, const struct http_req *req,
			      const char *body);

/* listen: "host:port" or "[v6]:port". NULL with a message in err. */
struct httpd *httpd_open(struct loop *l, const char *listen, const struct httpd_opts *o, char *err,
			 size_t errlen);
void httpd_close(struct httpd *h);

/* Serve path (exact match, no query) for the methods in the mask (enum http_method; HEAD is
 * served wherever GET is). 0 or -errno. */
int httpd_route(struct httpd *h, const char *path, unsigned methods, httpd_handler fn, void *ctx);

/* Forget every route registered with ctx (its owner is going away). */
void httpd_unroute(struct httpd *h, void *ctx);

/* The answer, sent as soon as the socket takes it; then the connection closes. ctype NULL: no
 * Content-Type. extra: more header lines, each ending in "\r\n", or NULL. The body is copied. */
void httpd_respond(struct http_conn *c, int status, const char *ctype, const char *extra,
		   const char *body, size_t len);
/* The same, body from a printf format. */
void httpd_respondf(struct http_conn *c, int status, const char *ctype, const char *extra,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Starts a response without a length (text/event-stream): the header is queued now and the
 * connection stays open until the client leaves or falls behind. -EBUSY at the stream cap (then
 * answer, e.g. 503). */
int httpd_stream_start(struct http_conn *c, const char *ctype, const char *extra);
/* Queue bytes on a stream and send what the socket takes. -EPIPE when the client is gone or was
 * dropped for being more than stream_buf behind (its close callback runs from the loop soon). */
int httpd_stream_write(struct http_conn *c, const char *data, size_t len);
/* Called once when c closes, whatever the reason; c is invalid afterwards. */
void httpd_on_close(struct http_conn *c, void (*fn)(void *ctx, struct http_conn *c), void *ctx);

/* For tests and the exposition: connections open now, and what the limits did since the start. */
struct httpd_stats {
	int conns, streams, max_conns;
	unsigned long long full; /* times the cap was reached (new clients then wait) */
	unsigned long long shed; /* accepted and closed at once because fds ran out */
	unsigned long long timeouts;
	unsigned long long dropped; /* streams dropped for falling behind */
};
void httpd_stats(const struct httpd *h, struct httpd_stats *st);

#endif
