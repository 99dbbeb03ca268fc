// SPDX-License-Identifier: MIT
/* The service-manager notification: NOTIFY_SOCKET and WATCHDOG_* parsing, and the datagrams a
 * test socket receives (READY=1, STATUS= on change only, WATCHDOG=1 only when asked, STOPPING=1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/notify.h"

static void parse_addr(void **state)
{
	struct sockaddr_un sa;
	socklen_t len;
	char big[200];

	(void)state;
	assert_int_equal(notify_parse_addr("/run/systemd/notify", &sa, &len), 0);
	assert_string_equal(sa.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 20);
	assert_int_equal(notify_parse_addr("@sd-abc", &sa, &len), 0);
	assert_int_equal(sa.sun_path[0], 0);
	assert_memory_equal(sa.sun_path + 1, "sd-abc", 6);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 7);
	assert_int_equal(notify_parse_addr("vsock:2:1234", &sa, &len), -EAFNOSUPPORT);
	assert_int_equal(notify_parse_addr("relative", &sa, &len), -EINVAL);
	assert_int_equal(notify_parse_addr("@", &sa, &len), -EINVAL);
	assert_int_equal(notify_parse_addr("", &sa, &len), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = 0;
	assert_int_equal(notify_parse_addr(big, &sa, &len), -ENAMETOOLONG);
}

static void parse_watchdog(void **state)
{
	(void)state;
	assert_int_equal(notify_parse_watchdog(NULL, NULL, 10), 0);
	assert_int_equal(notify_parse_watchdog("30000000", NULL, 10), 30000000);
	assert_int_equal(notify_parse_watchdog("30000000", "10", 10), 30000000);
	assert_int_equal(notify_parse_watchdog("30000000", "11", 10), 0);
	assert_int_equal(notify_parse_watchdog("0", NULL, 10), -EINVAL);
	assert_int_equal(notify_parse_watchdog("-5", NULL, 10), -EINVAL);
	assert_int_equal(notify_parse_watchdog("12x", NULL, 10), -EINVAL);
	assert_int_equal(notify_parse_watchdog("100", "x", 10), -EINVAL);
}

/* ---- datagrams to a real socket ---- */

static char status_now[64] = "starting";

static void status_fn(void *ctx, char *buf, size_t len)
{
	(void)ctx;
	snprintf(buf, len, "%s", status_now);
}

/* The next datagram within ms, "" when none came. */
static const char *next_msg(int fd, int ms)
{
	static char buf[512];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	buf[0] = 0;
	if (poll(&p, 1, ms) == 1 && (n = recv(fd, buf, sizeof(buf) - 1, 0)) >= 0)
		buf[n] = 0;
	return buf;
}

static int open_receiver(char *name, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(name, len, "@revenant-test-notify-%d", getpid());
	memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
	assert_int_equal(
	    bind(fd, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + strlen(name)),
	    0);
	return fd;
}

struct script {
	struct loop *loop;
	struct loop_timer change, stop;
};

static void on_change(struct loop *l, void *ctx)
{
	(void)l;
	(void)ctx;
	snprintf(status_now, sizeof(status_now), "1/1 services up");
}

static void on_stop(struct loop *l, void *ctx)
{
	(void)ctx;
	loop_stop(l, 0);
}

static void run_loop_for(struct loop *l, int change_ms, int stop_ms)
{
	struct script s;

	loop_timer_init(&s.change, on_change, &s);
	loop_timer_init(&s.stop, on_stop, &s);
	loop_timer_after_ms(l, &s.change, change_ms);
	loop_timer_after_ms(l, &s.stop, stop_ms);
	assert_int_equal(loop_run(l), 0);
	loop_timer_cancel(l, &s.change);
}

static void ready_status_stopping(void **state)
{
	char name[108];
	int fd = open_receiver(name, sizeof(name));
	struct loop *l = loop_new();

	(void)state;
	snprintf(status_now, sizeof(status_now), "starting");
	setenv("NOTIFY_SOCKET", name, 1);
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(notify_init(), 0);
	/* The services the agent starts must not inherit the manager's socket. */
	assert_null(getenv("NOTIFY_SOCKET"));
	notify_ready(l, status_fn, NULL);
	assert_string_equal(next_msg(fd, 1000), "READY=1\nSTATUS=starting");
	run_loop_for(l, 5, 50);
	assert_string_equal(next_msg(fd, 1000), "STATUS=1/1 services up");
	/* No change, no datagram; and no keep-alive without WATCHDOG_USEC. */
	assert_string_equal(next_msg(fd, 50), "");
	notify_stopping("SIGTERM");
	assert_string_equal(next_msg(fd, 1000),
			    "STOPPING=1\nSTATUS=stopping (SIGTERM): 1/1 services up");
	notify_stopping("SIGTERM");
	assert_string_equal(next_msg(fd, 50), "");
	notify_close();
	loop_free(l);
	close(fd);
}

static void watchdog_when_asked(void **state)
{
	char name[108];
	int fd = open_receiver(name, sizeof(name)), dogs = 0;
	struct loop *l = loop_new();
	const char *m;

	(void)state;
	setenv("NOTIFY_SOCKET", name, 1);
	setenv("WATCHDOG_USEC", "40000", 1); /* 40 ms: a keep-alive every 20 ms */
	unsetenv("WATCHDOG_PID");
	assert_int_equal(notify_init(), 0);
	assert_null(getenv("WATCHDOG_USEC"));
	notify_ready(l, status_fn, NULL);
	run_loop_for(l, 1000, 110);
	while (*(m = next_msg(fd, 0)))
		dogs += !strcmp(m, "WATCHDOG=1");
	/* One at READY, then every 20 ms of the 110 ms run (6); timers may run late when loaded. */
	assert_in_range(dogs, 3, 7);
	notify_close();
	loop_free(l);
	close(fd);
}

static void silent_without_socket(void **state)
{
	struct loop *l = loop_new();

	(void)state;
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "40000", 1);
	assert_int_equal(notify_init(), 0);
	notify_ready(l, status_fn, NULL);
	notify_stopping("SIGTERM");
	notify_close();
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_addr),
	    cmocka_unit_test(parse_watchdog),
	    cmocka_unit_test(ready_status_stopping),
	    cmocka_unit_test(watchdog_when_asked),
	    cmocka_unit_test(silent_without_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
