// SPDX-License-Identifier: MIT
/* The HTTP request parser of the agent's listeners. Line by line over a bounded buffer: a line is
 * judged only once it is complete (so a request split across TCP segments parses the same as a
 * whole one), except the limits, which are enforced as soon as they are passed. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "lib/http.h"

/* The longest request line a valid request can have: "OPTIONS " + target + " HTTP/1.1" + CR. */
#define MAX_REQUEST_LINE (7 + 1 + HTTP_MAX_TARGET + 1 + 8 + 1)

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* field-value characters: VCHAR, obs-text, SP, HTAB */
static bool is_field_char(unsigned char c)
{
	return (c >= 0x21 && c != 0x7f) || is_ows(c);
}

static bool token_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && !strncasecmp(p, lit, n);
}

/* Copies p[0..n) into a buffer of size cap; false when it does not fit. */
static bool copy_field(char *dst, size_t cap, const char *p, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, p, n);
	dst[n] = 0;
	return true;
}

static int parse_request_line(const char *p, size_t n, struct http_req *req)
{
	const char *sp1 = memchr(p, ' ', n), *sp2, *target, *ver, *q;
	size_t tlen, vlen;

	if (!sp1 || sp1 == p)
		return 400;
	for (const char *c = p; c < sp1; c++)
		if (!is_tchar((unsigned char)*c))
			return 400;
	target = sp1 + 1;
	sp2 = memchr(target, ' ', n - (target - p));
	if (!sp2 || sp2 == target)
		return 400;
	tlen = sp2 - target;
	ver = sp2 + 1;
	vlen = n - (ver - p);
	for (const char *c = target; c < sp2; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return 400;
	if (vlen != 8 || memcmp(ver, "HTTP/", 5) || !isdigit((unsigned char)ver[5]) ||
	    ver[6] != '.' || !isdigit((unsigned char)ver[7]))
		return 400;
	if (ver[5] != '1')
		return 505;
	req->minor = ver[7] - '0';
	if (tlen > HTTP_MAX_TARGET)
		return 414;
	/* origin-form only: an absolute URI or "*" names no resource of ours */
	if (target[0] != '/')
		return 400;
	if (sp1 - p == 3 && !memcmp(p, "GET", 3))
		req->method = HTTP_GET;
	else if (sp1 - p == 4 && !memcmp(p, "HEAD", 4))
		req->method = HTTP_HEAD;
	else if (sp1 - p == 4 && !memcmp(p, "POST", 4))
		req->method = HTTP_POST;
	else
		return 501; /* methods are case-sensitive: "get" is not GET */
	q = memchr(target, '?', tlen);
	copy_field(req->path, sizeof(req->path), target, q ? (size_t)(q - target) : tlen);
	if (q)
		copy_field(req->query, sizeof(req->query), q + 1, tlen - (q + 1 - target));
	return 200;
}

static bool parse_decimal(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		if (v > (max - (p[i] - '0')) / 10)
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

/* Whether the comma-separated list p[0..n) holds the token tok (Connection: keep-alive, close). */
static bool list_has(const char *p, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (is_ows(p[i]) || p[i] == ','))
			i++;
		s = i;
		while (i < n && p[i] != ',')
			i++;
		e = i;
		while (e > s && is_ows(p[e - 1]))
			e--;
		if (e > s && token_eq(p + s, e - s, tok))
			return true;
	}
	return false;
}

struct seen {
	bool content_length;
	int fields;
};

static int parse_field(const char *p, size_t n, struct http_req *req, struct seen *seen)
{
	const char *colon = memchr(p, ':', n), *v;
	size_t nlen, vlen;

	if (is_ows((unsigned char)p[0]))
		return 400; /* obs-fold: RFC 9112 lets a server refuse it */
	if (++seen->fields > HTTP_MAX_FIELDS)
		return 431;
	if (!colon || colon == p)
		return 400;
	nlen = colon - p;
	for (size_t i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)p[i]))
			return 400; /* also whitespace before the colon (a smuggling classic) */
	v = colon + 1;
	vlen = n - (v - p);
	for (size_t i = 0; i < vlen; i++)
		if (!is_field_char((unsigned char)v[i]))
			return 400;
	while (vlen && is_ows((unsigned char)v[0])) {
		v++;
		vlen--;
	}
	while (vlen && is_ows((unsigned char)v[vlen - 1]))
		vlen--;

	if (token_eq(p, nlen, "Host")) {
		if (req->has_host || !copy_field(req->host, sizeof(req->host), v, vlen))
			return 400;
		req->has_host = true;
	} else if (token_eq(p, nlen, "Content-Length")) {
		uint64_t cl;

		if (!parse_decimal(v, vlen, UINT64_MAX, &cl))
			return 400;
		if (seen->content_length && cl != req->content_length)
			return 400;
		if (cl > HTTP_MAX_BODY)
			return 413;
		seen->content_length = true;
		req->content_length = cl;
	} else if (token_eq(p, nlen, "Transfer-Encoding")) {
		return 501; /* no chunked bodies: nothing here takes a body that large */
	} else if (token_eq(p, nlen, "Authorization")) {
		if (vlen > 7 && !strncasecmp(v, "Bearer ", 7))
			copy_field(req->token, sizeof(req->token), v + 7, vlen - 7);
	} else if (token_eq(p, nlen, "X-Revenant-Token")) {
		copy_field(req->token, sizeof(req->token), v, vlen);
	} else if (token_eq(p, nlen, "Last-Event-ID")) {
		req->has_last_event_id = parse_decimal(v, vlen, UINT64_MAX, &req->last_event_id);
	} else if (token_eq(p, nlen, "Connection")) {
		req->close = req->close || list_has(v, vlen, "close");
	}
	return 200;
}

int http_parse(const char *buf, size_t len, struct http_req *req)
{
	struct seen seen = {0};
	size_t pos = 0, skipped = 0;
	bool have_line = false;

	memset(req, 0, sizeof(*req));
	/* RFC 9112 2.2: ignore at least one empty line before the request line. */
	while (pos < len && skipped < 4 && (buf[pos] == '\r' || buf[pos] == '\n')) {
		if (buf[pos] == '\r' && pos + 1 == len)
			return HTTP_INCOMPLETE;
		if (buf[pos] == '\r' && buf[pos + 1] != '\n')
			return 400;
		pos += buf[pos] == '\r' ? 2 : 1;
		skipped++;
	}
	for (;;) {
		const char *line = buf + pos;
		const char *lf = memchr(line, '\n', len - pos);
		size_t n, avail = len - pos;
		int rc;

		if (!lf) {
			/* The line is not complete: only the limits and a first byte that can
			 * start no method are judged now. */
			if (!have_line && avail && !is_tchar((unsigned char)line[0]))
				return 400;
			if (!have_line && avail > MAX_REQUEST_LINE)
				return 414;
			if (len > HTTP_MAX_HEADER)
				return 431;
			return HTTP_INCOMPLETE;
		}
		n = lf - line;
		pos += n + 1;
		if (pos > HTTP_MAX_HEADER)
			return have_line ? 431 : 414;
		if (n && line[n - 1] == '\r')
			n--;
		if (memchr(line, '\r', n))
			return 400; /* a bare CR */
		if (!have_line) {
			rc = parse_request_line(line, n, req);
			have_line = true;
		} else if (n == 0) {
			break;
		} else {
			rc = parse_field(line, n, req, &seen);
		}
		if (rc != 200)
			return rc;
	}
	if (req->minor >= 1 && !req->has_host)
		return 400; /* RFC 9112 3.2: a 1.1 request without Host */
	if (req->method != HTTP_POST && req->content_length)
		return 400; /* no GET with a body: nothing would read it */
	req->header_len = pos;
	return 200;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* dotted quad, each part 0..255 */
static bool is_ipv4(const char *s, size_t n)
{
	int parts = 0, digits = 0, val = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!digits || val > 255)
				return false;
			parts++;
			digits = val = 0;
			continue;
		}
		if (!isdigit((unsigned char)s[i]) || ++digits > 3)
			return false;
		val = val * 10 + (s[i] - '0');
	}
	return parts == 4;
}

bool http_host_is_local(const char *host)
{
	size_t n = strlen(host);
	const char *colon;

	if (host[0] == '[') {
		const char *close = strchr(host, ']');

		if (!close || close == host + 1)
			return false;
		for (const char *c = host + 1; c < close; c++)
			if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
				return false;
		colon = close + 1;
		n = close + 1 - host;
		if (*colon && *colon != ':')
			return false;
	} else {
		colon = strchr(host, ':');
		if (colon)
			n = colon - host;
		if (!token_eq(host, n, "localhost") && !is_ipv4(host, n))
			return false;
	}
	if (colon && *colon) {
		size_t pl = strlen(colon + 1);
		uint64_t port;

		if (!parse_decimal(colon + 1, pl, 65535, &port))
			return false;
	}
	return true;
}
