// SPDX-License-Identifier: MIT
/* libFuzzer target: the HTTP request parser of the agent's listeners (http_parse) on arbitrary
 * bytes, as any local user can send them to metrics.listen. Checks, beyond "no crash, no read past
 * the buffer": the result is a status the server knows; an accepted head is within the limits and
 * ends with an empty line; every prefix of it is incomplete (so a request split across segments
 * parses as a whole); and the Host check never reads past its string. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_prefixes(const char *buf, const struct http_req *whole)
{
	/* A few cut points, not all: the fuzzer should go wide, not quadratic. */
	size_t cuts[] = {0, 1, whole->header_len / 2, whole->header_len - 2, whole->header_len - 1};
	struct http_req r;

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		size_t k = cuts[i];
		char *p;

		if (k >= whole->header_len)
			continue;
		p = malloc(k ? k : 1);
		if (!p)
			return;
		memcpy(p, buf, k);
		if (http_parse(p, k, &r) != HTTP_INCOMPLETE)
			abort();
		free(p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: the parser takes a length, and ASan catches any read past it. */
	char *buf = malloc(size ? size : 1);
	struct http_req req;
	int rc;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	rc = http_parse(buf, size, &req);
	switch (rc) {
	case HTTP_INCOMPLETE:
		if (size > HTTP_MAX_HEADER)
			abort(); /* past the limit it must have been refused */
		break;
	case 200:
		if (req.header_len < 4 || req.header_len > size || req.header_len > HTTP_MAX_HEADER ||
		    buf[req.header_len - 1] != '\n' || req.path[0] != '/' ||
		    strlen(req.path) > HTTP_MAX_TARGET || req.content_length > HTTP_MAX_BODY ||
		    !(req.method == HTTP_GET || req.method == HTTP_HEAD || req.method == HTTP_POST) ||
		    memchr(req.token, '\r', strlen(req.token)) || memchr(req.host, '\n', strlen(req.host)))
			abort();
		check_prefixes(buf, &req);
		if (req.has_host)
			(void)http_host_is_local(req.host);
		break;
	case 400:
	case 413:
	case 414:
	case 431:
	case 501:
	case 505:
		break;
	default:
		abort();
	}
	free(buf);
	return 0;
}
