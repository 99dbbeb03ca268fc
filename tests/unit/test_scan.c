// SPDX-License-Identifier: MIT
/* `revenant scan` merging (fd rows, map entries, table rows → one row per socket), filtering, the
 * table and JSON output; and the runtime state file that attributes pids to services. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <cmocka.h>

#include "cmd/scan.h"
#include "lib/state.h"
#include "lib/util.h"

#define NETNS 4026531840u

static void set_addr(uint8_t *dst, uint8_t *family, const char *addr)
{
	memset(dst, 0, REV_ADDR_LEN);
	*family = strchr(addr, ':') ? REV_AF_INET6 : REV_AF_INET;
	assert_int_equal(inet_pton(*family == REV_AF_INET6 ? AF_INET6 : AF_INET, addr, dst), 1);
}

/* A row of iter/task_file: pid holds socket sk through fd. */
static struct snap_sock fd_row(uint64_t sk, pid_t pid, uint32_t fd, const char *comm,
			       const char *addr, int port, int proto)
{
	struct snap_sock r = {0};

	r.type = REV_SNAP_SOCK_FD;
	r.sk = sk;
	r.ino = sk + 1000;
	r.pid = pid;
	r.uid = 1000 + pid;
	r.fd = fd;
	set_addr(r.addr, &r.family, addr);
	r.port = port;
	r.proto = proto;
	r.state = proto == REV_PROTO_TCP ? 10 : 7;
	r.netns = NETNS;
	snprintf(r.comm, sizeof(r.comm), "%s", comm);
	return r;
}

/* A row of iter/tcp or iter/udp: the socket is in the table (no process). */
static struct snap_sock table_row(uint64_t sk, const char *addr, int port, int proto)
{
	struct snap_sock r = fd_row(sk, 0, 0, "", addr, port, proto);

	r.type = REV_SNAP_SOCK_TABLE;
	r.uid = 77;
	return r;
}

static struct listener map_entry(uint64_t sk, pid_t pid, const char *comm, const char *addr,
				 int port)
{
	struct listener l;

	memset(&l, 0, sizeof(l));
	l.k.sk = sk;
	set_addr(l.k.addr, &l.k.family, addr);
	l.k.netns = NETNS;
	l.k.port = port;
	l.k.proto = REV_PROTO_TCP;
	l.v.pid = pid;
	l.v.uid = 500;
	l.v.confirmed = 1;
	snprintf(l.v.comm, sizeof(l.v.comm), "%s", comm);
	return l;
}

static void assert_holders(const struct scan_row *row, const pid_t *want, size_t n)
{
	assert_int_equal(row->n_holders, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(row->holders[i], want[i]);
}

static void fork_shared_socket_is_one_row(void **state)
{
	/* A parent (300) forked twice (100, 200) and dup()ed it: four fds, three pids. */
	struct snap_sock ss[] = {
	    fd_row(0xa000, 300, 3, "parent", "127.0.0.1", 8080, REV_PROTO_TCP),
	    fd_row(0xa000, 200, 3, "kid2", "127.0.0.1", 8080, REV_PROTO_TCP),
	    table_row(0xa000, "127.0.0.1", 8080, REV_PROTO_TCP),
	    fd_row(0xa000, 300, 7, "parent", "127.0.0.1", 8080, REV_PROTO_TCP),
	    fd_row(0xa000, 100, 3, "kid1", "127.0.0.1", 8080, REV_PROTO_TCP),
	};
	const pid_t want[] = {100, 200, 300};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(NULL, 0, ss, 5, &r), 0);
	assert_int_equal(r.n, 1);
	assert_holders(&r.rows[0], want, 3);
	/* Without the map, the owner is the lowest holder. */
	assert_int_equal(r.rows[0].pid, 100);
	assert_string_equal(r.rows[0].comm, "kid1");
	assert_int_equal(r.rows[0].uid, 1100);
	assert_int_equal(r.rows[0].port, 8080);
	assert_int_equal(r.rows[0].sk, 0xa000);
	scan_rows_free(&r);
	assert_null(r.rows);
	assert_int_equal(r.n, 0);
}

static void map_names_the_listen_caller(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(0xb000, 100, 3, "kid", "0.0.0.0", 9000, REV_PROTO_TCP),
	    fd_row(0xb000, 90, 4, "parent", "0.0.0.0", 9000, REV_PROTO_TCP),
	};
	struct listener ls[] = {map_entry(0xb000, 100, "kid-listen", "0.0.0.0", 9000)};
	const pid_t want[] = {90, 100};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(ls, 1, ss, 2, &r), 0);
	assert_int_equal(r.n, 1);
	assert_holders(&r.rows[0], want, 2);
	assert_int_equal(r.rows[0].pid, 100);
	assert_string_equal(r.rows[0].comm, "kid-listen");
	assert_int_equal(r.rows[0].uid, 500);
	scan_rows_free(&r);

	/* The listen() caller has since given the socket away: it is not a holder, so not the
	 * owner. */
	ls[0].v.pid = 4242;
	assert_int_equal(scan_merge(ls, 1, ss, 2, &r), 0);
	assert_int_equal(r.n, 1);
	assert_holders(&r.rows[0], want, 2);
	assert_int_equal(r.rows[0].pid, 90);
	assert_string_equal(r.rows[0].comm, "parent");
	scan_rows_free(&r);
}

static void map_entry_alone_is_a_row(void **state)
{
	struct listener ls[] = {map_entry(0xc000, 321, "server", "::", 7000)};
	const pid_t want[] = {321};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(ls, 1, NULL, 0, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.rows[0].pid, 321);
	assert_string_equal(r.rows[0].comm, "server");
	assert_holders(&r.rows[0], want, 1);
	assert_int_equal(r.rows[0].state, 10);
	assert_int_equal(r.rows[0].family, REV_AF_INET6);
	assert_int_equal(r.rows[0].port, 7000);
	scan_rows_free(&r);

	/* With a table row for the same socket (the agent's quick path): still one row, the map's.
	 */
	{
		struct snap_sock ss[] = {table_row(0xc000, "::", 7000, REV_PROTO_TCP)};

		assert_int_equal(scan_merge(ls, 1, ss, 1, &r), 0);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.rows[0].pid, 321);
		assert_holders(&r.rows[0], want, 1);
		scan_rows_free(&r);
	}
}

static void table_only_socket_has_no_owner(void **state)
{
	struct snap_sock ss[] = {table_row(0xd000, "0.0.0.0", 2024, REV_PROTO_TCP)};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(NULL, 0, ss, 1, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.rows[0].pid, 0);
	assert_int_equal(r.rows[0].n_holders, 0);
	assert_int_equal(r.rows[0].uid, 77);
	assert_string_equal(r.rows[0].comm, "");
	assert_int_equal(r.rows[0].port, 2024);
	scan_rows_free(&r);
}

static void same_port_other_netns_is_another_row(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(0xe000, 10, 3, "host", "127.0.0.1", 5000, REV_PROTO_TCP),
	    fd_row(0xe100, 20, 3, "inside", "127.0.0.1", 5000, REV_PROTO_TCP),
	};
	struct scan_rows r;

	(void)state;
	ss[1].netns = NETNS + 7;
	assert_int_equal(scan_merge(NULL, 0, ss, 2, &r), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.rows[0].netns, NETNS);
	assert_int_equal(r.rows[0].pid, 10);
	assert_int_equal(r.rows[1].netns, NETNS + 7);
	assert_int_equal(r.rows[1].pid, 20);
	scan_rows_free(&r);
}

static void rows_sorted_by_proto_port_family_addr(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(1, 11, 3, "a", "127.0.0.1", 53, REV_PROTO_UDP),
	    fd_row(2, 12, 3, "b", "127.0.0.1", 80, REV_PROTO_TCP),
	    fd_row(3, 13, 3, "c", "::", 53, REV_PROTO_TCP),
	    fd_row(4, 14, 3, "d", "127.0.0.2", 53, REV_PROTO_TCP),
	    fd_row(5, 15, 3, "e", "127.0.0.1", 53, REV_PROTO_TCP),
	    fd_row(6, 16, 3, "f", "::1", 53, REV_PROTO_TCP),
	};
	const pid_t order[] = {15, 14, 13, 16, 12, 11};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(NULL, 0, ss, 6, &r), 0);
	assert_int_equal(r.n, 6);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(r.rows[i].pid, order[i]);
	scan_rows_free(&r);
}

static void filter_by_port_and_proto(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(1, 11, 3, "a", "127.0.0.1", 53, REV_PROTO_UDP),
	    fd_row(2, 12, 3, "b", "127.0.0.1", 53, REV_PROTO_TCP),
	    fd_row(3, 13, 3, "c", "127.0.0.1", 80, REV_PROTO_TCP),
	    fd_row(4, 14, 3, "d", "127.0.0.1", 443, REV_PROTO_TCP),
	};
	const int p53[] = {53}, p80_443[] = {443, 80}, p9[] = {9};
	struct scan_rows r;

	(void)state;
	assert_int_equal(scan_merge(NULL, 0, ss, 4, &r), 0);
	scan_filter(&r, NULL, 0, true, true);
	assert_int_equal(r.n, 4);
	scan_filter(&r, p53, 1, true, true);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.rows[0].proto, REV_PROTO_TCP);
	assert_int_equal(r.rows[1].proto, REV_PROTO_UDP);
	scan_filter(&r, NULL, 0, false, true);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.rows[0].pid, 11);
	scan_rows_free(&r);

	assert_int_equal(scan_merge(NULL, 0, ss, 4, &r), 0);
	scan_filter(&r, p80_443, 2, true, false);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.rows[0].port, 80);
	assert_int_equal(r.rows[1].port, 443);
	scan_filter(&r, p9, 1, true, true);
	assert_int_equal(r.n, 0);
	scan_rows_free(&r);

	assert_int_equal(scan_merge(NULL, 0, ss, 4, &r), 0);
	scan_filter(&r, NULL, 0, true, false);
	assert_int_equal(r.n, 3);
	scan_rows_free(&r);
}

static const cJSON *field(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	assert_non_null(v);
	return v;
}

static void json_fields(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(1, 40, 3, "srv", "::", 8443, REV_PROTO_TCP),
	    fd_row(1, 41, 3, "srv-kid", "::", 8443, REV_PROTO_TCP),
	    fd_row(2, 42, 3, "dns", "127.0.0.1", 5353, REV_PROTO_UDP),
	    table_row(3, "0.0.0.0", 2024, REV_PROTO_TCP),
	};
	struct scan_rows r;
	const cJSON *o, *h;
	cJSON *arr;
	char *s;

	(void)state;
	ss[0].uid = ss[1].uid = 0;
	ss[3].uid = 0;
	assert_int_equal(scan_merge(NULL, 0, ss, 4, &r), 0);
	assert_int_equal(r.n, 3);
	snprintf(r.rows[1].service, sizeof(r.rows[1].service), "backend"); /* rows are sorted */
	s = scan_json(&r);
	assert_non_null(s);
	arr = cJSON_Parse(s);
	assert_non_null(arr);
	assert_true(cJSON_IsArray(arr));
	assert_int_equal(cJSON_GetArraySize(arr), 3);

	/* tcp 2024 (table only), tcp 8443, udp 5353 */
	o = cJSON_GetArrayItem(arr, 0);
	assert_string_equal(field(o, "proto")->valuestring, "tcp");
	assert_string_equal(field(o, "family")->valuestring, "ipv4");
	assert_string_equal(field(o, "addr")->valuestring, "0.0.0.0");
	assert_int_equal(field(o, "port")->valueint, 2024);
	assert_string_equal(field(o, "state")->valuestring, "listen");
	assert_true(cJSON_IsNull(field(o, "pid")));
	assert_true(cJSON_IsNull(field(o, "comm")));
	assert_true(cJSON_IsNull(field(o, "service")));
	assert_int_equal(field(o, "uid")->valueint, 0);
	assert_string_equal(field(o, "user")->valuestring, "root");
	assert_true(cJSON_IsArray(field(o, "holders")));
	assert_int_equal(cJSON_GetArraySize(field(o, "holders")), 0);
	assert_true(field(o, "netns")->valuedouble == (double)NETNS);

	o = cJSON_GetArrayItem(arr, 1);
	assert_string_equal(field(o, "proto")->valuestring, "tcp");
	assert_string_equal(field(o, "family")->valuestring, "ipv6");
	assert_string_equal(field(o, "addr")->valuestring, "::");
	assert_int_equal(field(o, "port")->valueint, 8443);
	assert_string_equal(field(o, "state")->valuestring, "listen");
	assert_int_equal(field(o, "pid")->valueint, 40);
	assert_string_equal(field(o, "comm")->valuestring, "srv");
	assert_string_equal(field(o, "service")->valuestring, "backend");
	h = field(o, "holders");
	assert_int_equal(cJSON_GetArraySize(h), 2);
	assert_int_equal(cJSON_GetArrayItem(h, 0)->valueint, 40);
	assert_int_equal(cJSON_GetArrayItem(h, 1)->valueint, 41);

	o = cJSON_GetArrayItem(arr, 2);
	assert_string_equal(field(o, "proto")->valuestring, "udp");
	assert_string_equal(field(o, "state")->valuestring, "bound");
	assert_int_equal(field(o, "pid")->valueint, 42);
	assert_int_equal(field(o, "uid")->valueint, 1042);
	if (!getpwuid(1042)) /* no such user: the uid as text */
		assert_string_equal(field(o, "user")->valuestring, "1042");

	cJSON_Delete(arr);
	free(s);
	scan_rows_free(&r);

	/* No rows: an empty array, not nothing. */
	s = scan_json(&r);
	assert_string_equal(s, "[]");
	free(s);
}

static void tcp_bound_not_listening_is_bound(void **state)
{
	struct snap_sock ss[] = {fd_row(1, 40, 3, "x", "127.0.0.1", 6000, REV_PROTO_TCP)};
	struct scan_rows r;
	cJSON *arr;
	char *s;

	(void)state;
	ss[0].state = 7; /* TCP_CLOSE: bound, no listen() yet */
	assert_int_equal(scan_merge(NULL, 0, ss, 1, &r), 0);
	s = scan_json(&r);
	arr = cJSON_Parse(s);
	assert_string_equal(field(cJSON_GetArrayItem(arr, 0), "state")->valuestring, "bound");
	cJSON_Delete(arr);
	free(s);
	scan_rows_free(&r);
}

/* The JSON writer escapes strings as cJSON does and writes addresses as inet_ntop does: comms
 * with quotes, backslashes, control characters and UTF-8, every IPv4 digit count, IPv6. */
static void json_strings_and_addresses_as_cjson_writes_them(void **state)
{
	static const char *comms[] = {"a\"b\\c", "tab\there\n", "\x01\x1f\x7f", "caf\xc3\xa9", ""};
	static const char *addrs[] = {"0.0.0.0", "9.10.99.100", "255.255.255.255", "::1",
				      "fe80::1:2"};
	struct snap_sock ss[5];
	struct scan_rows r;
	char *s;

	(void)state;
	for (int i = 0; i < 5; i++) {
		ss[i] = fd_row(i + 1, 40 + i, 3, "x", addrs[i], 7000 + i, REV_PROTO_TCP);
		memcpy(ss[i].comm, comms[i], strlen(comms[i]) + 1);
	}
	assert_int_equal(scan_merge(NULL, 0, ss, 5, &r), 0);
	assert_int_equal(r.n, 5);
	s = scan_json(&r);
	assert_non_null(s);
	for (int i = 0; i < 5; i++) {
		cJSON *c = cJSON_CreateString(comms[i]), *a = cJSON_CreateString(addrs[i]);
		char *cs = cJSON_PrintUnformatted(c), *as = cJSON_PrintUnformatted(a);
		char want[256];

		/* rows are sorted by port: row i is ss[i] */
		snprintf(want, sizeof(want), "\"addr\":%s,\"port\":%d,", as, 7000 + i);
		assert_non_null(strstr(s, want));
		snprintf(want, sizeof(want), "\"pid\":%d,\"comm\":%s,", 40 + i, cs);
		assert_non_null(strstr(s, want));
		free(cs);
		free(as);
		cJSON_Delete(c);
		cJSON_Delete(a);
	}
	free(s);
	scan_rows_free(&r);
}

static void table_has_header_and_rows(void **state)
{
	struct snap_sock ss[] = {
	    fd_row(1, 40, 3, "srv", "::1", 8443, REV_PROTO_TCP),
	    fd_row(1, 41, 3, "srv", "::1", 8443, REV_PROTO_TCP),
	    table_row(2, "0.0.0.0", 2024, REV_PROTO_TCP),
	};
	struct scan_rows r;
	char *s;

	(void)state;
	ss[2].netns = NETNS + 1;
	assert_int_equal(scan_merge(NULL, 0, ss, 3, &r), 0);
	s = scan_table(&r, NETNS);
	assert_non_null(s);
	assert_non_null(strstr(s, "PROTO"));
	assert_non_null(strstr(s, "ADDRESS"));
	assert_non_null(strstr(s, "HOLDERS"));
	assert_non_null(strstr(s, "NETNS"));
	assert_non_null(strstr(s, "[::1]:8443"));
	assert_non_null(strstr(s, "40,41"));
	assert_non_null(strstr(s, "host"));
	assert_non_null(strstr(s, "0.0.0.0:2024"));
	assert_non_null(strstr(s, "4026531841"));
	/* header + two rows */
	{
		int lines = 0;

		for (const char *p = s; *p; p++)
			lines += *p == '\n';
		assert_int_equal(lines, 3);
	}
	free(s);
	scan_rows_free(&r);
}

/* --- the runtime state file --- */

static void state_round_trip(void **state)
{
	char dir[] = "/tmp/revenant-test-state-XXXXXX", path[REV_PATH_BUF];
	struct svc_record svcs[2] = {0};
	struct rt_state st = {0}, back;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	assert_int_equal(state_read(path, &back), -ENOENT);

	snprintf(svcs[0].name, sizeof(svcs[0].name), "backend");
	svcs[0].pid = 1234;
	svcs[0].pgid = 1234;
	svcs[0].start_ticks = 987654321ull;
	svcs[0].port = 12001;
	svcs[0].restarts = 2;
	snprintf(svcs[0].state, sizeof(svcs[0].state), "running");
	snprintf(svcs[0].health, sizeof(svcs[0].health), "ok");
	snprintf(svcs[1].name, sizeof(svcs[1].name), "frontend");
	svcs[1].pid = 0;
	snprintf(svcs[1].state, sizeof(svcs[1].state), "stopped");
	st.agent_pid = 42;
	st.svcs = svcs;
	st.n = 2;
	assert_int_equal(state_write(path, &st), 0);
	assert_int_equal(state_read(path, &back), 0);
	assert_int_equal(back.agent_pid, 42);
	assert_int_equal(back.n, 2);
	assert_string_equal(back.svcs[0].name, "backend");
	assert_int_equal(back.svcs[0].pid, 1234);
	assert_int_equal(back.svcs[0].pgid, 1234);
	assert_true(back.svcs[0].start_ticks == 987654321ull);
	assert_int_equal(back.svcs[0].port, 12001);
	assert_int_equal(back.svcs[0].restarts, 2);
	assert_string_equal(back.svcs[0].state, "running");
	assert_string_equal(back.svcs[0].health, "ok");
	assert_string_equal(back.svcs[1].name, "frontend");
	assert_string_equal(back.svcs[1].state, "stopped");
	state_free(&back);
	assert_null(back.svcs);

	/* The temp file of the atomic write is gone. */
	{
		char tmp[4300];
		struct stat sb;

		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		assert_int_equal(stat(tmp, &sb), -1);
	}

	/* A damaged file is -EINVAL, not a crash. */
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("{\"agent_pid\": 4", f);
		fclose(f);
		assert_int_equal(state_read(path, &back), -EINVAL);
		state_free(&back);
	}

	/* 1000 services (~150 KB): read whole, not cut at a fixed 64 KiB buffer */
	{
		struct svc_record *many = calloc(1000, sizeof(*many));

		assert_non_null(many);
		for (int i = 0; i < 1000; i++) {
			snprintf(many[i].name, sizeof(many[i].name), "service-%04d", i);
			many[i].pid = 100000 + i;
			many[i].start_ticks = 1234567890123ull + i;
			snprintf(many[i].state, sizeof(many[i].state), "running");
			snprintf(many[i].health, sizeof(many[i].health), "ok");
		}
		st.svcs = many;
		st.n = 1000;
		assert_int_equal(state_write(path, &st), 0);
		assert_int_equal(state_read(path, &back), 0);
		assert_int_equal(back.n, 1000);
		assert_string_equal(back.svcs[999].name, "service-0999");
		assert_int_equal(back.svcs[999].start_ticks, 1234567890123ull + 999);
		state_free(&back);
		free(many);
	}
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* A record counts only while its process is the one recorded: pid and start time. */
static void service_of_pid_and_pgid(void **state)
{
	struct svc_record svcs[2] = {0};
	struct rt_state st = {0};
	pid_t me = getpid(), pgid = getpgid(0);
	uint64_t ticks = proc_start_ticks(me);

	(void)state;
	assert_true(ticks > 0);
	snprintf(svcs[0].name, sizeof(svcs[0].name), "memory");
	svcs[0].pid = me;
	svcs[0].pgid = 999999;
	svcs[0].start_ticks = ticks;
	st.svcs = svcs;
	st.n = 1;
	assert_string_equal(state_service_of(&st, me), "memory");
	/* the same pid with another start time: a reused pid, not the service's process */
	svcs[0].start_ticks = ticks + 1;
	assert_null(state_service_of(&st, me));
	svcs[0].start_ticks = 0; /* no start time recorded: nothing to prove it */
	assert_null(state_service_of(&st, me));
	svcs[0].pid = 999999; /* gone */
	svcs[0].start_ticks = ticks;
	assert_null(state_service_of(&st, 999999));
	assert_null(state_service_of(&st, 0));
	assert_null(state_service_of(&st, -5));
	assert_null(state_service_of(NULL, me));

	if (pgid > 1 && pgid != me && proc_start_ticks(pgid)) {
		/* this test's own process is in the group of "engines", whose leader is recorded */
		snprintf(svcs[1].name, sizeof(svcs[1].name), "engines");
		svcs[1].pid = pgid;
		svcs[1].pgid = pgid;
		svcs[1].start_ticks = proc_start_ticks(pgid);
		st.svcs = svcs + 1;
		st.n = 1;
		assert_string_equal(state_service_of(&st, me), "engines");
		/* the group's number now leads another process: not the recorded group */
		svcs[1].start_ticks++;
		assert_null(state_service_of(&st, me));
		svcs[1].start_ticks--;
		svcs[1].pgid = pgid + 1;
		assert_null(state_service_of(&st, me));
	}
}

static void runtime_path(void **state)
{
	char buf[256];

	(void)state;
	state_runtime_path("/run/revenant/control.sock", "state.json", buf, sizeof(buf));
	assert_string_equal(buf, "/run/revenant/state.json");
	state_runtime_path("/tmp/x/y/control.sock", "agent.lock", buf, sizeof(buf));
	assert_string_equal(buf, "/tmp/x/y/agent.lock");
	state_runtime_path("control.sock", "state.json", buf, sizeof(buf));
	assert_string_equal(buf, "./state.json");
}

/* The full answer from the map and the table rows: each socket in the tables is held by its map
 * entry's owner; a bound TCP socket comes from the map alone; stale entries and the agent's note
 * are dropped; a shared entry, an unknown socket or another netns needs the fd tables. */
static void attribute_from_map_and_tables(void **state)
{
	struct listener ls[6];
	struct snap t = {0};
	struct scan_rows rows;
	size_t n = 0;
	const pid_t one[] = {40};

	(void)state;
	ls[n++] = map_entry(0x1000, 40, "web", "127.0.0.1", 8080);
	ls[n] = map_entry(0x2000, 41, "dns", "127.0.0.1", 5353);
	ls[n].k.proto = REV_PROTO_UDP;
	ls[n++].v.state = REV_TCP_CLOSE;
	ls[n] = map_entry(0x3000, 42, "client", "127.0.0.1", 7000); /* TCP bound, not listening */
	ls[n++].v.state = REV_TCP_CLOSE;
	ls[n] = map_entry(0x4000, 43, "gone", "127.0.0.1", 6000); /* UDP closed since */
	ls[n].k.proto = REV_PROTO_UDP;
	ls[n++].v.state = REV_TCP_CLOSE;
	memset(&ls[n++], 0, sizeof(ls[0])); /* the meta entry */
	ls[n++] = map_entry(0x5000, 0, "", "0.0.0.0", 2024); /* seeded, owner unseen */
	{
		struct snap_sock a = table_row(0x1000, "127.0.0.1", 8080, REV_PROTO_TCP);
		struct snap_sock b = table_row(0x2000, "127.0.0.1", 5353, REV_PROTO_UDP);
		struct snap_sock c = table_row(0x5000, "0.0.0.0", 2024, REV_PROTO_TCP);

		snapshot_add_sock(&t, &a);
		snapshot_add_sock(&t, &b);
		snapshot_add_sock(&t, &c);
	}
	assert_int_equal(scan_attribute(ls, &n, &t, NETNS), 0);
	assert_int_equal(n, 1); /* only the bound TCP socket is still needed from the map */
	assert_int_equal(ls[0].k.sk, 0x3000);
	assert_int_equal(scan_merge(ls, n, t.socks, t.n_socks, &rows), 0);
	assert_int_equal(rows.n, 4);
	for (size_t i = 0; i < rows.n; i++) {
		const struct scan_row *r = &rows.rows[i];

		if (r->port == 8080) {
			assert_int_equal(r->pid, 40);
			assert_holders(r, one, 1);
			assert_string_equal(r->comm, "web");
			assert_int_equal(r->ino, 0x1000 + 1000);
		} else if (r->port == 5353) {
			assert_int_equal(r->pid, 41);
			assert_int_equal(r->proto, REV_PROTO_UDP);
		} else if (r->port == 7000) {
			assert_int_equal(r->pid, 42);
			assert_int_equal(r->state, REV_TCP_CLOSE);
		} else {
			assert_int_equal(r->port, 2024);
			assert_int_equal(r->pid, 0);
			assert_int_equal(r->n_holders, 0);
		}
	}
	scan_rows_free(&rows);

	/* shared: walk */
	n = 0;
	ls[n] = map_entry(0x1000, 40, "web", "127.0.0.1", 8080);
	ls[n++].v.shared = 1;
	assert_int_equal(scan_attribute(ls, &n, &t, NETNS), -EAGAIN);
	/* a socket nobody recorded (autobound UDP): walk */
	n = 0;
	ls[n++] = map_entry(0x1000, 40, "web", "127.0.0.1", 8080);
	assert_int_equal(scan_attribute(ls, &n, &t, NETNS), -EAGAIN);
	/* an entry of another netns: the tables cannot vouch for it */
	n = 0;
	ls[n] = map_entry(0x9000, 40, "web", "127.0.0.1", 8080);
	ls[n++].k.netns = NETNS + 1;
	assert_int_equal(scan_attribute(ls, &n, &t, NETNS), -EAGAIN);
	snapshot_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(fork_shared_socket_is_one_row),
	    cmocka_unit_test(map_names_the_listen_caller),
	    cmocka_unit_test(map_entry_alone_is_a_row),
	    cmocka_unit_test(table_only_socket_has_no_owner),
	    cmocka_unit_test(same_port_other_netns_is_another_row),
	    cmocka_unit_test(rows_sorted_by_proto_port_family_addr),
	    cmocka_unit_test(filter_by_port_and_proto),
	    cmocka_unit_test(json_fields),
	    cmocka_unit_test(tcp_bound_not_listening_is_bound),
	    cmocka_unit_test(json_strings_and_addresses_as_cjson_writes_them),
	    cmocka_unit_test(table_has_header_and_rows),
	    cmocka_unit_test(state_round_trip),
	    cmocka_unit_test(service_of_pid_and_pgid),
	    cmocka_unit_test(runtime_path),
	    cmocka_unit_test(attribute_from_map_and_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
