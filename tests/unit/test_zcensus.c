// SPDX-License-Identifier: MIT
/* The zombie census behind revenant_zombies{parent_comm,service}: set semantics by pid, deletion
 * inside probe runs, grouping, label escaping, and dropping entries that are no longer zombies. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/zcensus.h"

static pid_t make_zombie(void)
{
	pid_t pid = fork();
	siginfo_t si;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	/* Exited, not reaped: a zombie until the test waits for it. */
	assert_int_equal(waitid(P_PID, pid, &si, WEXITED | WNOWAIT), 0);
	return pid;
}

static void set_semantics(void **state)
{
	(void)state;
	assert_int_equal(zcensus_add(100, "make", "backend"), 0);
	assert_int_equal(zcensus_add(100, "make", "backend"), 0); /* reported again: not twice */
	assert_int_equal(zcensus_count(), 1);
	zcensus_del(101);
	assert_int_equal(zcensus_count(), 1);
	zcensus_del(100);
	assert_int_equal(zcensus_count(), 0);
	zcensus_del(100);
	assert_int_equal(zcensus_count(), 0);
	zcensus_free();
}

/* Many pids through growth and deletions from the middle of probe runs: every remaining pid is
 * still found (deleting it again lowers the count). */
static void many_deletes(void **state)
{
	(void)state;
	for (pid_t p = 1; p <= 5000; p++)
		assert_int_equal(zcensus_add(p * 64, "p", ""), 0); /* same low bits: long runs */
	assert_int_equal(zcensus_count(), 5000);
	for (pid_t p = 1; p <= 5000; p += 2)
		zcensus_del(p * 64);
	assert_int_equal(zcensus_count(), 2500);
	for (pid_t p = 2; p <= 5000; p += 2) {
		size_t before = zcensus_count();

		zcensus_del(p * 64);
		assert_int_equal(zcensus_count(), before - 1);
	}
	assert_int_equal(zcensus_count(), 0);
	zcensus_free();
}

static void exposition(void **state)
{
	pid_t z1 = make_zombie(), z2 = make_zombie(), z3 = make_zombie();
	char buf[4096];
	size_t n;

	(void)state;
	zcensus_add(z1, "make", "backend");
	zcensus_add(z2, "make", "backend");
	zcensus_add(z3, "we\"ird\\\x01", "");
	/* Our own pid is alive, not a zombie: a lost reap record; the scrape drops it. */
	zcensus_add(getpid(), "bash", "");
	n = zcensus_metrics(buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_non_null(strstr(buf, "# TYPE revenant_zombies gauge\n"));
	assert_non_null(
	    strstr(buf, "revenant_zombies{parent_comm=\"make\",service=\"backend\"} 2\n"));
	assert_non_null(
	    strstr(buf, "revenant_zombies{parent_comm=\"we\\\"ird\\\\?\",service=\"\"} 1\n"));
	assert_null(strstr(buf, "bash"));
	assert_int_equal(zcensus_count(), 3);
	/* The largest group first. */
	assert_true(strstr(buf, "\"make\"") < strstr(buf, "we\\\""));
	waitpid(z1, NULL, 0);
	n = zcensus_metrics(buf, sizeof(buf));
	assert_non_null(
	    strstr(buf, "revenant_zombies{parent_comm=\"make\",service=\"backend\"} 1\n"));
	waitpid(z2, NULL, 0);
	waitpid(z3, NULL, 0);
	n = zcensus_metrics(buf, sizeof(buf));
	assert_null(strstr(buf, "revenant_zombies{"));
	assert_int_equal(zcensus_count(), 0);
	/* Never past the buffer. */
	assert_true(zcensus_metrics(buf, 10) <= 10);
	zcensus_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(set_semantics),
	    cmocka_unit_test(many_deletes),
	    cmocka_unit_test(exposition),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
