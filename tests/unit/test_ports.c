// SPDX-License-Identifier: MIT
/* Port conflict rules and owner choice: exact, wildcard, dual-stack, v6only, netns, proto. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "lib/ports.h"

static struct sock_ident id(const char *addr, int port, int proto, int v6only)
{
	struct sock_ident s = {0};

	s.family = strchr(addr, ':') ? REV_AF_INET6 : REV_AF_INET;
	inet_pton(s.family == REV_AF_INET6 ? AF_INET6 : AF_INET, addr, s.addr);
	s.port = port;
	s.proto = proto;
	s.v6only = v6only;
	s.netns = 1;
	return s;
}

static void conflicts(void **state)
{
	struct sock_ident a = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	struct sock_ident b;

	(void)state;
	b = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	assert_int_equal(ports_conflict(&a, &b), 3);
	b = id("0.0.0.0", 80, REV_PROTO_TCP, 0);
	assert_int_equal(ports_conflict(&a, &b), 2);
	assert_int_equal(ports_conflict(&b, &a), 2);
	b = id("127.0.0.2", 80, REV_PROTO_TCP, 0);
	assert_int_equal(ports_conflict(&a, &b), 0);
	b = id("127.0.0.1", 81, REV_PROTO_TCP, 0);
	assert_int_equal(ports_conflict(&a, &b), 0);
	b = id("127.0.0.1", 80, REV_PROTO_UDP, 0);
	assert_int_equal(ports_conflict(&a, &b), 0);
	b = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	b.netns = 2;
	assert_int_equal(ports_conflict(&a, &b), 0);
}

static void dual_stack(void **state)
{
	struct sock_ident v4 = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	struct sock_ident any6 = id("::", 80, REV_PROTO_TCP, 0);
	struct sock_ident any6only = id("::", 80, REV_PROTO_TCP, 1);
	struct sock_ident lo6 = id("::1", 80, REV_PROTO_TCP, 0);
	struct sock_ident mapped = id("::ffff:127.0.0.1", 80, REV_PROTO_TCP, 0);

	(void)state;
	assert_int_equal(ports_conflict(&any6, &v4), 1);
	assert_int_equal(ports_conflict(&v4, &any6), 1);
	assert_int_equal(ports_conflict(&any6only, &v4), 0);
	assert_int_equal(ports_conflict(&v4, &any6only), 0);
	assert_int_equal(ports_conflict(&lo6, &v4), 0);
	assert_int_equal(ports_conflict(&mapped, &v4), 1);
	assert_int_equal(ports_conflict(&any6, &lo6), 2);
}

static void best_listener_prefers_exact_and_confirmed(void **state)
{
	struct listener ls[3] = {0};
	struct sock_ident want = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	struct sock_ident s;

	(void)state;
	s = id("::", 80, REV_PROTO_TCP, 0);
	memcpy(ls[0].k.addr, s.addr, 16);
	ls[0].k.family = REV_AF_INET6;
	s = id("127.0.0.1", 80, REV_PROTO_TCP, 0);
	memcpy(ls[1].k.addr, s.addr, 16);
	ls[1].k.family = REV_AF_INET;
	memcpy(&ls[2], &ls[1], sizeof(ls[1]));
	for (int i = 0; i < 3; i++) {
		ls[i].k.port = 80;
		ls[i].k.proto = REV_PROTO_TCP;
		ls[i].k.netns = 1;
		ls[i].v.pid = 100 + i;
	}
	ls[2].v.confirmed = 1;
	assert_int_equal(ports_best_listener(ls, 3, &want), 2);
	ls[2].k.port = 81;
	assert_int_equal(ports_best_listener(ls, 3, &want), 1);
	ls[1].k.port = 81;
	assert_int_equal(ports_best_listener(ls, 3, &want), 0);
	ls[0].v.v6only = 1;
	assert_int_equal(ports_best_listener(ls, 3, &want), -1);
}

static void pin_dir(void **state)
{
	char a[256], b[256];

	(void)state;
	ports_pin_dir("/run/revenant/control.sock", a, sizeof(a));
	assert_string_equal(a, "/sys/fs/bpf/revenant");
	ports_pin_dir("/tmp/x/control.sock", a, sizeof(a));
	ports_pin_dir("/tmp/y/control.sock", b, sizeof(b));
	assert_string_not_equal(a, b);
	assert_memory_equal(a, "/sys/fs/bpf/revenant-", 21);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conflicts),
		cmocka_unit_test(dual_stack),
		cmocka_unit_test(best_listener_prefers_exact_and_confirmed),
		cmocka_unit_test(pin_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
