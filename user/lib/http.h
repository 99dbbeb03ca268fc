/* SPDX-License-Identifier: MIT */
/* HTTP/1.x requests, as the agent's local listeners take them: a strict, bounded parser of the
 * request line and header fields (RFC 9112), pure, so that a fuzzer and unit tests drive it. */
#ifndef REVENANT_HTTP_H
#define REVENANT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADER 8192 /* request line and fields, blank line included: else 431 */
#define HTTP_MAX_TARGET 1024 /* the request-target: else 414 */
#define HTTP_MAX_FIELDS 64   /* header fields: else 431 */
#define HTTP_MAX_BODY	4096 /* Content-Length of a POST: else 413 */

/* http_parse() results besides a status code: the header has not ended yet. */
#define HTTP_INCOMPLETE 0

enum http_method {
	HTTP_GET = 1,
	HTTP_HEAD = 2,
	HTTP_POST = 4,
};

struct http_req {
	enum http_method method;
	int minor;			 /* HTTP/1.minor */
	char path[HTTP_MAX_TARGET + 1];	 /* the target up to '?', as sent (no %-decoding) */
	char query[HTTP_MAX_TARGET + 1]; /* after '?', "" when none */
	size_t header_len;     /* bytes of the request line and fields, blank line included */
	size_t content_length; /* 0 when absent */
	bool has_host;
	char host[256];
	/* The control token: "Authorization: Bearer T" or "X-Revenant-Token: T". */
	char token[128];
	bool has_last_event_id;
	uint64_t last_event_id; /* "Last-Event-ID" when it is a decimal number */
	bool close;		/* "Connection: close" */
};

/* Parse the head of a request in buf[0..len). Returns HTTP_INCOMPLETE while no blank line ends it
 * (call again with more bytes; a prefix of a valid request is never refused), 200 when complete
 * and valid (req filled; a body of req->content_length bytes follows header_len), else the status
 * to answer with: 400 malformed, 413 body too large, 414 target too long, 431 header too large,
 * 501 method or transfer coding not implemented, 505 version not supported. Never reads buf past
 * len; buf need not be NUL-terminated. */
int http_parse(const char *buf, size_t len, struct http_req *req);

/* "Not Found" for 404 etc.; "Unknown" for codes it does not know. */
const char *http_reason(int status);

/* Whether host (a Host field value) names this machine's loopback or an IP literal: the page and
 * its API refuse other names, so a web page that rebinds its DNS name to 127.0.0.1 cannot read
 * them through a visitor's browser. */
bool http_host_is_local(const char *host);

#endif
