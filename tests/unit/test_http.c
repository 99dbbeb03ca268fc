// SPDX-License-Identifier: MIT
/* The HTTP request parser of the agent's listeners: what a request must look like, which status
 * each malformed or oversized one gets, and that a request split anywhere parses as a whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http.h"

static struct http_req req;

static int parse(const char *s)
{
	return http_parse(s, strlen(s), &req);
}

static void get_with_host(void **state)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nAccept: */*\r\n\r\n";

	(void)state;
	assert_int_equal(parse(s), 200);
	assert_int_equal(req.method, HTTP_GET);
	assert_int_equal(req.minor, 1);
	assert_string_equal(req.path, "/metrics");
	assert_string_equal(req.query, "");
	assert_string_equal(req.host, "127.0.0.1:9464");
	assert_int_equal(req.header_len, strlen(s));
	assert_int_equal(req.content_length, 0);
}

/* A TCP segment boundary may fall anywhere: every strict prefix is incomplete, never refused. */
static void every_split_is_incomplete(void **state)
{
	const char *reqs[] = {
		"GET /api/events?x=1 HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: 42\r\n\r\n",
		"POST /api/services/a/restart HTTP/1.1\r\nHost: [::1]:9464\r\n"
		"X-Revenant-Token: abc\r\nContent-Length: 2\r\n\r\n{}",
		"\r\nGET / HTTP/1.0\n\n",
	};

	(void)state;
	for (size_t r = 0; r < sizeof(reqs) / sizeof(reqs[0]); r++) {
		size_t len = strlen(reqs[r]);
		struct http_req whole;

		assert_int_equal(http_parse(reqs[r], len, &whole), 200);
		for (size_t k = 0; k < whole.header_len; k++) {
			int rc = http_parse(reqs[r], k, &req);

			if (rc != HTTP_INCOMPLETE)
				fail_msg("request %zu cut at %zu: %d, expected incomplete", r, k, rc);
		}
		/* and the body is not part of the head */
		assert_int_equal(whole.header_len + whole.content_length, len);
	}
}

static void fields_the_agent_reads(void **state)
{
	(void)state;
	assert_int_equal(parse("GET /api/events HTTP/1.1\r\nhost: a:1\r\nlast-event-id: 18446744073709551615"
			       "\r\nConnection: keep-alive, Close\r\n\r\n"),
			 200);
	assert_true(req.has_last_event_id);
	assert_true(req.last_event_id == UINT64_MAX);
	assert_true(req.close);
	assert_int_equal(parse("GET / HTTP/1.0\r\nLast-Event-ID: 18446744073709551616\r\n\r\n"), 200);
	assert_false(req.has_last_event_id);
	assert_int_equal(parse("GET / HTTP/1.0\r\nLast-Event-ID: x1\r\n\r\n"), 200);
	assert_false(req.has_last_event_id);
	assert_int_equal(parse("POST /x HTTP/1.0\r\nAuthorization: bearer  T0k\r\n\r\n"), 200);
	assert_string_equal(req.token, " T0k"); /* taken as sent: a wrong token simply fails */
	assert_int_equal(parse("POST /x HTTP/1.0\r\nX-Revenant-Token:   tok \r\n\r\n"), 200);
	assert_string_equal(req.token, "tok");
	assert_int_equal(parse("HEAD /a?b?c HTTP/1.0\r\n\r\n"), 200);
	assert_int_equal(req.method, HTTP_HEAD);
	assert_string_equal(req.path, "/a");
	assert_string_equal(req.query, "b?c");
	/* bare LF line ends are tolerated, as RFC 9112 allows */
	assert_int_equal(parse("GET / HTTP/1.0\nX: y\n\n"), 200);
}

static void malformed_is_400(void **state)
{
	static const char *bad[] = {
		"GET / HTTP/1.1\r\n\r\n",			 /* 1.1 without Host */
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /* two Hosts */
		"GET  / HTTP/1.0\r\n\r\n",			 /* two spaces */
		"GET / HTTP/1.0 \r\n\r\n",			 /* trailing space */
		"GET /a b HTTP/1.0\r\n\r\n",
		"GET http://x/ HTTP/1.0\r\n\r\n",		 /* absolute-form */
		"GET * HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.0\r\nX : y\r\n\r\n",		 /* space before the colon */
		"GET / HTTP/1.0\r\nX: y\r\n z\r\n\r\n",	 /* obs-fold */
		"GET / HTTP/1.0\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.0\r\n: empty name\r\n\r\n",
		"GET / HTTP/1.0\r\nX: a\rb\r\n\r\n",		 /* bare CR */
		"GET / HTTP/1.0\r\nX: a\x01\r\n\r\n",	 /* control character */
		"GET / HTTP/1.0\r\nContent-Length: 1x\r\n\r\n",
		"POST / HTTP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", /* GET with a body */
		"GET / HTTP1.0\r\n\r\n",
		"GET /\x7f HTTP/1.0\r\n\r\n",
		"\r\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i]);

		if (rc != 400)
			fail_msg("%zu (%s): %d, expected 400", i, bad[i], rc);
	}
}

static void limits(void **state)
{
	char *big = malloc(HTTP_MAX_HEADER + 4096);
	int n;

	(void)state;
	assert_non_null(big);
	/* a target over the limit: 414, even before its line ends */
	n = snprintf(big, HTTP_MAX_HEADER + 4096, "GET /");
	memset(big + n, 'a', HTTP_MAX_TARGET + 64);
	big[n + HTTP_MAX_TARGET + 64] = 0;
	assert_int_equal(parse(big), 414);
	strcat(big, " HTTP/1.0\r\n\r\n");
	assert_int_equal(parse(big), 414);
	/* fields over the limit: 431, complete or not */
	n = snprintf(big, HTTP_MAX_HEADER + 4096, "GET / HTTP/1.0\r\nX: ");
	memset(big + n, 'a', HTTP_MAX_HEADER);
	big[n + HTTP_MAX_HEADER] = 0;
	assert_int_equal(parse(big), 431);
	strcat(big, "\r\n\r\n");
	assert_int_equal(parse(big), 431);
	/* too many fields */
	n = snprintf(big, HTTP_MAX_HEADER + 4096, "GET / HTTP/1.0\r\n");
	for (int i = 0; i <= HTTP_MAX_FIELDS; i++)
		n += snprintf(big + n, HTTP_MAX_HEADER + 4096 - n, "X%d: y\r\n", i);
	strcat(big, "\r\n");
	assert_int_equal(parse(big), 431);
	/* a body over the limit: 413 from its Content-Length, before it is sent */
	snprintf(big, HTTP_MAX_HEADER + 4096, "POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n",
		 HTTP_MAX_BODY + 1);
	assert_int_equal(parse(big), 413);
	snprintf(big, HTTP_MAX_HEADER + 4096, "POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n",
		 HTTP_MAX_BODY);
	assert_int_equal(parse(big), 200);
	assert_int_equal(req.content_length, HTTP_MAX_BODY);
	free(big);
}

static void not_implemented(void **state)
{
	(void)state;
	assert_int_equal(parse("PUT / HTTP/1.0\r\n\r\n"), 501);
	assert_int_equal(parse("get / HTTP/1.0\r\n\r\n"), 501);
	assert_int_equal(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
	assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n"), 505);
	assert_int_equal(parse("GET / HTTP/0.9\r\n\r\n"), 505);
}

/* Garbage is refused at its first byte, not after a timeout. */
static void garbage_early(void **state)
{
	(void)state;
	assert_int_equal(http_parse("\x16\x03\x01", 3, &req), 400); /* a TLS hello */
	assert_int_equal(http_parse("{", 1, &req), 400);
	assert_int_equal(http_parse("G", 1, &req), HTTP_INCOMPLETE);
	assert_int_equal(http_parse("", 0, &req), HTTP_INCOMPLETE);
	assert_int_equal(http_parse("\r", 1, &req), HTTP_INCOMPLETE);
}

/* Only the buffer's length counts: no NUL needed, nothing read past it. */
static void uses_length(void **state)
{
	const char *s = "GET / HTTP/1.0\r\n\r\nGARBAGE";

	(void)state;
	assert_int_equal(http_parse(s, strlen(s) - 7, &req), 200);
	assert_int_equal(req.header_len, strlen(s) - 7);
	assert_int_equal(http_parse(s, 10, &req), HTTP_INCOMPLETE);
}

static void local_hosts(void **state)
{
	static const char *ok[] = {"127.0.0.1", "127.0.0.1:9464", "localhost", "LocalHost:1",
				   "[::1]", "[::1]:9464", "10.0.0.5:80", "[::ffff:127.0.0.1]:1"};
	static const char *no[] = {"evil.example",   "127.0.0.1.evil.example", "localhost.evil",
				   "[::1]x",	     "[]",		       "1.2.3.4:99999",
				   "1.2.3.4:",	     "256.0.0.1",	       "1.2.3",
				   "[::1]:9464:1",   "",		       "localhost:80x"};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!http_host_is_local(ok[i]))
			fail_msg("%s refused", ok[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (http_host_is_local(no[i]))
			fail_msg("%s accepted", no[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_with_host),
		cmocka_unit_test(every_split_is_incomplete),
		cmocka_unit_test(fields_the_agent_reads),
		cmocka_unit_test(malformed_is_400),
		cmocka_unit_test(limits),
		cmocka_unit_test(not_implemented),
		cmocka_unit_test(garbage_early),
		cmocka_unit_test(uses_length),
		cmocka_unit_test(local_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
