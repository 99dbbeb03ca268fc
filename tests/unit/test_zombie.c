// SPDX-License-Identifier: MIT
/* The zombie deadline tracker: grace, reap before/after the deadline, pid reuse, ordering, bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "agent/zombie.h"

#define MS 1000000ull

static struct zrec rec(pid_t pid, uint64_t start, uint64_t exit_ns)
{
	struct zrec r = {0};

	r.pid = pid;
	r.ppid = 1;
	r.start_ns = start;
	r.exit_ns = exit_ns;
	strcpy(r.comm, "child");
	return r;
}

static void reaped_in_time_is_not_due(void **state)
{
	struct ztrack *t = ztrack_new(1000 * MS, 100);
	struct zrec r = rec(10, 1, 5 * MS), out;

	(void)state;
	assert_int_equal(ztrack_exit(t, &r), 0);
	assert_int_equal(ztrack_next_deadline(t), 1005 * MS);
	assert_int_equal(ztrack_pop_due(t, 1004 * MS, &out), 0);
	assert_int_equal(ztrack_reap(t, 10, 1, &out), 0);
	assert_int_equal(ztrack_pop_due(t, 5000 * MS, &out), 0);
	assert_int_equal(ztrack_next_deadline(t), 0);
	assert_int_equal(ztrack_count(t), 0);
	ztrack_free(t);
}

static void due_after_grace_then_reaped(void **state)
{
	struct ztrack *t = ztrack_new(1000 * MS, 100);
	struct zrec r = rec(10, 1, 5 * MS), out;

	(void)state;
	assert_int_equal(ztrack_exit(t, &r), 0);
	assert_int_equal(ztrack_pop_due(t, 1005 * MS, &out), 1);
	assert_int_equal(out.pid, 10);
	assert_true(out.reported);
	/* reported once only */
	assert_int_equal(ztrack_pop_due(t, 9000 * MS, &out), 0);
	assert_int_equal(ztrack_next_deadline(t), 0);
	memset(&out, 0, sizeof(out));
	assert_int_equal(ztrack_reap(t, 10, 1, &out), 1);
	assert_int_equal(out.exit_ns, 5 * MS);
	assert_int_equal(ztrack_reap(t, 10, 1, &out), -ENOENT);
	ztrack_free(t);
}

static void duplicate_and_pid_reuse(void **state)
{
	struct ztrack *t = ztrack_new(100 * MS, 100);
	struct zrec a = rec(10, 1, 0), b = rec(10, 2, 50 * MS), out;

	(void)state;
	assert_int_equal(ztrack_exit(t, &a), 0);
	assert_int_equal(ztrack_exit(t, &a), -EEXIST);
	/* same pid, new process: the old entry is replaced and its deadline no longer fires */
	assert_int_equal(ztrack_exit(t, &b), 0);
	assert_int_equal(ztrack_count(t), 1);
	assert_int_equal(ztrack_next_deadline(t), 150 * MS);
	assert_int_equal(ztrack_pop_due(t, 120 * MS, &out), 0);
	assert_int_equal(ztrack_pop_due(t, 150 * MS, &out), 1);
	assert_int_equal(out.start_ns, 2);
	/* a reap of the old identity does not touch the new one */
	assert_int_equal(ztrack_reap(t, 10, 1, &out), -ENOENT);
	ztrack_free(t);
}

static void explicit_deadline_for_seeded(void **state)
{
	struct ztrack *t = ztrack_new(1000 * MS, 100);
	struct zrec r = rec(77, 3, 0), out;

	(void)state;
	r.deadline_ns = 1; /* existing zombie, already past its grace */
	r.seeded = true;
	assert_int_equal(ztrack_exit(t, &r), 0);
	assert_int_equal(ztrack_pop_due(t, 2, &out), 1);
	assert_true(out.seeded);
	ztrack_free(t);
}

static void many_entries_order_and_bound(void **state)
{
	struct ztrack *t = ztrack_new(10, 5000);
	struct zrec out;
	int n = 0;

	(void)state;
	for (int i = 1; i <= 5000; i++) {
		struct zrec r = rec(i, i, i);

		assert_int_equal(ztrack_exit(t, &r), 0);
	}
	{
		struct zrec r = rec(6000, 1, 1);

		assert_int_equal(ztrack_exit(t, &r), -ENOSPC);
	}
	/* reap every even pid in time; the odd ones become zombies in exit order */
	for (int i = 2; i <= 5000; i += 2)
		assert_int_equal(ztrack_reap(t, i, i, NULL), 0);
	for (pid_t last = 0; ztrack_pop_due(t, 100000, &out); n++) {
		assert_true(out.pid > last);
		assert_int_equal(out.pid % 2, 1);
		last = out.pid;
	}
	assert_int_equal(n, 2500);
	for (int i = 1; i <= 5000; i += 2)
		assert_int_equal(ztrack_reap(t, i, i, NULL), 1);
	assert_int_equal(ztrack_count(t), 0);
	ztrack_free(t);
}

static void forget(void **state)
{
	struct ztrack *t = ztrack_new(10, 10);
	struct zrec r = rec(5, 1, 0), out;

	(void)state;
	ztrack_exit(t, &r);
	assert_int_equal(ztrack_pop_due(t, 100, &out), 1);
	ztrack_forget(t, 5);
	assert_null(ztrack_find(t, 5));
	ztrack_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reaped_in_time_is_not_due),
		cmocka_unit_test(due_after_grace_then_reaped),
		cmocka_unit_test(duplicate_and_pid_reuse),
		cmocka_unit_test(explicit_deadline_for_seeded),
		cmocka_unit_test(many_entries_order_and_bound),
		cmocka_unit_test(forget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
