// SPDX-License-Identifier: MIT
/* The control protocol: what a request must look like (control_parse_request, the server's and
 * the fuzzer's entry point) and the client's answers to a missing, answering or silent agent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"

/* ---- control_parse_request ---- */

static char err[256];

static cJSON *parse(const char *s)
{
	memset(err, 0, sizeof(err));
	return control_parse_request(s, strlen(s), err, sizeof(err));
}

/* Must be refused with a one-line message containing needle. */
static void refused(const char *buf, size_t len, const char *needle)
{
	cJSON *req;

	memset(err, 0, sizeof(err));
	req = control_parse_request(buf, len, err, sizeof(err));
	if (req) {
		cJSON_Delete(req);
		fail_msg("request of %zu bytes was accepted", len);
	}
	if (!err[0] || strchr(err, '\n') || !strstr(err, needle))
		fail_msg("message \"%s\" lacks \"%s\"", err, needle);
}

static void parse_valid(void **state)
{
	cJSON *req = parse("{\"cmd\":\"status\"}");
	const cJSON *cmd;

	(void)state;
	assert_non_null(req);
	cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	assert_true(cJSON_IsString(cmd));
	assert_string_equal(cmd->valuestring, "status");
	cJSON_Delete(req);

	/* other keys ride along for the supervisor to read */
	req = parse(" {\"cmd\": \"stop\", \"service\": \"backend\", \"force\": true}\n");
	assert_non_null(req);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "service")->valuestring,
			    "backend");
	cJSON_Delete(req);
}

static void parse_not_json(void **state)
{
	static const char *const bad[] = {
	    "status", "{\"cmd\":", "{cmd: \"status\"}", "{\"cmd\":\"status\"", "}{",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i], strlen(bad[i]), "JSON");
}

static void parse_not_an_object_with_cmd(void **state)
{
	static const char *const bad[] = {
	    "[\"status\"]",
	    "[{\"cmd\":\"status\"}]",
	    "{}",
	    "{\"command\":\"status\"}",
	    "{\"cmd\":1}",
	    "{\"cmd\":null}",
	    "{\"cmd\":true}",
	    "{\"cmd\":[\"status\"]}",
	    "{\"cmd\":{\"name\":\"status\"}}",
	    "{\"CMD\":\"status\"}",
	    "\"status\"",
	    "\"cmd\"",
	    "42",
	    "null",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i], strlen(bad[i]), "\"cmd\"");
}

static void parse_empty(void **state)
{
	(void)state;
	refused("", 0, "bytes");
	refused("{\"cmd\":\"status\"}", 0, "bytes");
	refused(" ", 1, "JSON");
}

static void parse_oversized(void **state)
{
	const char *req = "{\"cmd\":\"status\"}";
	size_t n = CONTROL_MAX_MSG + 16;
	char *buf = malloc(n);
	cJSON *ok;

	(void)state;
	assert_non_null(buf);
	/* valid JSON padded with whitespace: only the size is wrong */
	memset(buf, ' ', n);
	memcpy(buf, req, strlen(req));
	refused(buf, CONTROL_MAX_MSG, "bytes");
	refused(buf, n, "bytes");
	/* the largest message allowed is CONTROL_MAX_MSG - 1 */
	ok = control_parse_request(buf, CONTROL_MAX_MSG - 1, err, sizeof(err));
	assert_non_null(ok);
	cJSON_Delete(ok);
	free(buf);
}

/* The server hands over exactly what recv() returned: no NUL after it. A heap buffer of exactly
 * that size lets valgrind/ASan catch any read past the end. */
static void parse_uses_length_not_nul(void **state)
{
	const char *req = "{\"cmd\":\"status\"}";
	size_t n = strlen(req);
	char *buf = malloc(n);
	cJSON *r;

	(void)state;
	assert_non_null(buf);
	memcpy(buf, req, n);
	r = control_parse_request(buf, n, err, sizeof(err));
	assert_non_null(r);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(r, "cmd")->valuestring, "status");
	cJSON_Delete(r);
	/* cut short by the length: the closing brace is not part of the message */
	refused(buf, n - 1, "JSON");
	free(buf);
}

/* A message that does not fit the buffer is not truncated into the message buffer. */
static void parse_tiny_error_buffer(void **state)
{
	char small[4] = "xxx";

	(void)state;
	assert_null(control_parse_request("[]", 2, small, sizeof(small)));
	assert_true(strlen(small) < sizeof(small));
}

/* ---- control_call ---- */

struct srv {
	char dir[64];
	char path[108];
	int lfd;
	pid_t child;
};

enum behaviour {
	ANSWER,	 /* read the request, answer with a canned response */
	GARBAGE, /* answer with something that is not JSON */
	HANG_UP, /* read the request, close without an answer */
	SILENT,	 /* read the request, never answer */
	HUGE,	 /* answer with a message larger than the client takes */
	CHUNKED, /* answer in chunk messages, as the agent sends a large reply */
	BAD_CHUNKS, /* a chunk, then a message that is no chunk */
};

#define CANNED "{\"ok\":true,\"agent_pid\":4242,\"services\":{\"backend\":{\"state\":\"running\"}}}"

static struct srv *srv_new(void)
{
	struct srv *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	assert_non_null(s);
	snprintf(s->dir, sizeof(s->dir), "/tmp/revenant-test-control-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/control.sock", s->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	s->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	s->child = -1;
	return s;
}

/* The server side runs in a child: no cmocka in there, its exit code is the verdict.
 * 0 ok, 2 accept failed, 3 the request was not the one expected. */
static void srv_serve(struct srv *s, enum behaviour b, const char *expect)
{
	s->child = fork();
	assert_true(s->child >= 0);
	if (s->child == 0) {
		char buf[512];
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			_exit(2);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 || (size_t)n != strlen(expect) || memcmp(buf, expect, n))
			_exit(3);
		switch (b) {
		case ANSWER:
			if (send(fd, CANNED, strlen(CANNED), MSG_NOSIGNAL) < 0)
				_exit(4);
			break;
		case GARBAGE:
			if (send(fd, "<html>", 6, MSG_NOSIGNAL) < 0)
				_exit(4);
			break;
		case HANG_UP:
			break;
		case SILENT:
			for (;;)
				pause();
		case CHUNKED: {
			/* {"ok":true,"pad":"xxx..."} in 3 chunks of at most CONTROL_MAX_MSG - 1 */
			static char big[2 * CONTROL_MAX_MSG + 100], msg[CONTROL_MAX_MSG];
			size_t len = sizeof(big), off = 0;

			memset(big, 'x', len);
			memcpy(big, "{\"ok\":true,\"pad\":\"", 18);
			memcpy(big + len - 2, "\"}", 2);
			while (off < len) {
				size_t n = len - off;

				if (n > CONTROL_MAX_MSG - 1)
					n = CONTROL_MAX_MSG - 1;
				msg[0] = off + n < len ? CONTROL_CHUNK_MORE : CONTROL_CHUNK_LAST;
				memcpy(msg + 1, big + off, n);
				if (send(fd, msg, n + 1, MSG_NOSIGNAL) < 0)
					_exit(4);
				off += n;
			}
			break;
		}
		case BAD_CHUNKS:
			/* a first chunk, then a plain message where the next chunk should be */
			if (send(fd, "+{\"ok\":", 7, MSG_NOSIGNAL) < 0 ||
			    send(fd, "{}", 2, MSG_NOSIGNAL) < 0)
				_exit(4);
			break;
		case HUGE: {
			static char big[CONTROL_MAX_MSG + 64];
			size_t len = sizeof(big);

			/* {"pad":"xxxx...."} of more than CONTROL_MAX_MSG bytes */
			memset(big, 'x', len);
			memcpy(big, "{\"pad\":\"", 8);
			memcpy(big + len - 2, "\"}", 2);
			if (send(fd, big, len, MSG_NOSIGNAL) < 0)
				_exit(4);
			break;
		}
		}
		close(fd);
		_exit(0);
	}
}

/* The child's verdict; a silent child is killed first. */
static int srv_child_status(struct srv *s, bool kill_it)
{
	int status = 0;

	if (s->child <= 0)
		return 0;
	if (kill_it)
		kill(s->child, SIGKILL);
	assert_int_equal(waitpid(s->child, &status, 0), s->child);
	s->child = -1;
	if (kill_it)
		return 0;
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void srv_free(struct srv *s)
{
	if (s->child > 0)
		srv_child_status(s, true);
	if (s->lfd >= 0)
		close(s->lfd);
	unlink(s->path);
	rmdir(s->dir);
	free(s);
}

/* Per test, so that a failed assertion still reaps the child and removes the socket. */
static int srv_setup(void **state)
{
	*state = srv_new();
	return 0;
}

static int srv_teardown(void **state)
{
	srv_free(*state);
	return 0;
}

static cJSON *status_req(void)
{
	cJSON *req = cJSON_CreateObject();

	assert_non_null(req);
	assert_non_null(cJSON_AddStringToObject(req, "cmd", "status"));
	return req;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void call_no_socket(void **state)
{
	struct srv *s = *state;
	char path[160];
	cJSON *req = status_req(), *resp = (cJSON *)&resp;

	snprintf(path, sizeof(path), "%s/nothing-here.sock", s->dir);
	assert_int_equal(control_call(path, req, 1000, &resp), -ENOENT);
	assert_null(resp);
	snprintf(path, sizeof(path), "%s/no-such-dir/control.sock", s->dir);
	assert_int_equal(control_call(path, req, 1000, &resp), -ENOENT);
	assert_null(resp);
	cJSON_Delete(req);
}

/* A socket file left by a dead agent: nobody listens. */
static void call_stale_socket(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;

	close(s->lfd);
	s->lfd = -1;
	assert_int_equal(control_call(s->path, req, 1000, &resp), -ECONNREFUSED);
	assert_null(resp);
	cJSON_Delete(req);
}

static void call_path_too_long(void **state)
{
	char path[200];
	cJSON *req = status_req(), *resp = NULL;

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	assert_int_equal(control_call(path, req, 1000, &resp), -ENAMETOOLONG);
	assert_null(resp);
	cJSON_Delete(req);
}

static void call_answered(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;
	const cJSON *svcs, *b;

	srv_serve(s, ANSWER, "{\"cmd\":\"status\"}");
	assert_int_equal(control_call(s->path, req, 5000, &resp), 0);
	assert_non_null(resp);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")));
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(resp, "agent_pid")->valueint, 4242);
	svcs = cJSON_GetObjectItemCaseSensitive(resp, "services");
	b = cJSON_GetObjectItemCaseSensitive(svcs, "backend");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(b, "state")->valuestring, "running");
	/* and the server got exactly the request, one message */
	assert_int_equal(srv_child_status(s, false), 0);
	cJSON_Delete(resp);
	cJSON_Delete(req);
}

static void call_silent_server_times_out(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;
	uint64_t t0, dt;

	srv_serve(s, SILENT, "{\"cmd\":\"status\"}");
	t0 = now_ms();
	assert_int_equal(control_call(s->path, req, 100, &resp), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_null(resp);
	/* it waited for the timeout, and not much longer */
	if (dt < 100 || dt > 3000)
		fail_msg("control_call returned after %llu ms, timeout 100",
			 (unsigned long long)dt);
	srv_child_status(s, true);
	cJSON_Delete(req);
}

/* A hung agent that no longer accepts: the connection sits in the backlog. */
static void call_never_accepted_times_out(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;
	uint64_t t0, dt;

	t0 = now_ms();
	assert_int_equal(control_call(s->path, req, 100, &resp), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_null(resp);
	if (dt < 100 || dt > 3000)
		fail_msg("control_call returned after %llu ms, timeout 100",
			 (unsigned long long)dt);
	cJSON_Delete(req);
}

static void call_hang_up(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;
	int rc;

	srv_serve(s, HANG_UP, "{\"cmd\":\"status\"}");
	rc = control_call(s->path, req, 5000, &resp);
	assert_int_equal(srv_child_status(s, false), 0);
	assert_true(rc < 0 && rc != -ETIMEDOUT);
	assert_null(resp);
	cJSON_Delete(req);
}

static void call_garbage_answer(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;

	srv_serve(s, GARBAGE, "{\"cmd\":\"status\"}");
	assert_int_equal(control_call(s->path, req, 5000, &resp), -EBADMSG);
	assert_null(resp);
	assert_int_equal(srv_child_status(s, false), 0);
	cJSON_Delete(req);
}

/* An answer larger than the client's buffer is an error, never a half-read message. */
static void call_oversized_answer(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;

	srv_serve(s, HUGE, "{\"cmd\":\"status\"}");
	assert_int_equal(control_call(s->path, req, 5000, &resp), -EBADMSG);
	assert_null(resp);
	assert_int_equal(srv_child_status(s, false), 0);
	cJSON_Delete(req);
}

/* A reply larger than one message comes in chunks, joined in order. */
static void call_chunked_answer(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;
	const cJSON *pad;

	srv_serve(s, CHUNKED, "{\"cmd\":\"status\"}");
	assert_int_equal(control_call(s->path, req, 5000, &resp), 0);
	assert_non_null(resp);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")));
	pad = cJSON_GetObjectItemCaseSensitive(resp, "pad");
	assert_true(cJSON_IsString(pad));
	assert_int_equal(strlen(pad->valuestring), 2 * CONTROL_MAX_MSG + 100 - 20);
	for (const char *p = pad->valuestring; *p; p++)
		assert_int_equal(*p, 'x');
	assert_int_equal(srv_child_status(s, false), 0);
	cJSON_Delete(resp);
	cJSON_Delete(req);
}

static void call_broken_chunks(void **state)
{
	struct srv *s = *state;
	cJSON *req = status_req(), *resp = NULL;

	srv_serve(s, BAD_CHUNKS, "{\"cmd\":\"status\"}");
	assert_int_equal(control_call(s->path, req, 5000, &resp), -EBADMSG);
	assert_null(resp);
	assert_int_equal(srv_child_status(s, false), 0);
	cJSON_Delete(req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_valid),
	    cmocka_unit_test(parse_not_json),
	    cmocka_unit_test(parse_not_an_object_with_cmd),
	    cmocka_unit_test(parse_empty),
	    cmocka_unit_test(parse_oversized),
	    cmocka_unit_test(parse_uses_length_not_nul),
	    cmocka_unit_test(parse_tiny_error_buffer),
	    cmocka_unit_test_setup_teardown(call_no_socket, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_stale_socket, srv_setup, srv_teardown),
	    cmocka_unit_test(call_path_too_long),
	    cmocka_unit_test_setup_teardown(call_answered, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_silent_server_times_out, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_never_accepted_times_out, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_hang_up, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_garbage_answer, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_chunked_answer, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_broken_chunks, srv_setup, srv_teardown),
	    cmocka_unit_test_setup_teardown(call_oversized_answer, srv_setup, srv_teardown),
	};

	/* a server child that died must not kill the test with SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
