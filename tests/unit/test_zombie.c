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
#include "lib/loop.h"

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

/* A grace lowered on reload: exits after it are due at the new grace, even behind older exits
 * with longer deadlines (deadlines are a heap, not a FIFO). */
static void lower_grace_reorders_deadlines(void **state)
{
	struct ztrack *t = ztrack_new(10000 * MS, 100);
	struct zrec a = rec(10, 1, 0), b = rec(11, 1, 100 * MS), out;

	(void)state;
	assert_int_equal(ztrack_exit(t, &a), 0); /* due at 10000 ms */
	ztrack_set_grace(t, 200 * MS);
	assert_int_equal(ztrack_exit(t, &b), 0); /* due at 300 ms */
	assert_int_equal(ztrack_next_deadline(t), 300 * MS);
	assert_int_equal(ztrack_pop_due(t, 300 * MS, &out), 1);
	assert_int_equal(out.pid, 11);
	assert_int_equal(ztrack_next_deadline(t), 10000 * MS);
	assert_int_equal(ztrack_pop_due(t, 9999 * MS, &out), 0);
	assert_int_equal(ztrack_pop_due(t, 10000 * MS, &out), 1);
	assert_int_equal(out.pid, 10);
	ztrack_free(t);
}

/* ---- the watcher, with /proc replaced ---- */

static char fake_state[64]; /* by pid: 'Z', 'R', 0 (gone) */
static unsigned fake_flags[64];

static int state_looks; /* calls of st_of */

static char st_of(pid_t pid)
{
	state_looks++;
	return pid < 64 ? fake_state[pid] : 0;
}

static unsigned flags_of(pid_t pid)
{
	return pid < 64 ? fake_flags[pid] : 0;
}

static struct {
	int zombies, reaped, lost;
	pid_t last;
	bool last_act;
	enum ev_action answer;
} seen;

static enum ev_action on_z(void *ctx, const struct zrec *z, uint64_t now, bool act)
{
	(void)ctx;
	(void)now;
	seen.zombies++;
	seen.last = z->pid;
	seen.last_act = act;
	return seen.answer;
}

static void on_r(void *ctx, const struct zrec *z, uint64_t ns)
{
	(void)ctx;
	(void)ns;
	seen.reaped++;
	seen.last = z->pid;
}

static void on_l(void *ctx, uint64_t n)
{
	(void)ctx;
	seen.lost = (int)n;
}

static struct zwatch *watcher(struct loop **l, uint64_t grace_ms, size_t max)
{
	struct zwatch_hooks h = {.zombie = on_z, .reaped = on_r, .lost = on_l,
				 .proc_state = st_of, .proc_flags = flags_of};

	memset(&seen, 0, sizeof(seen));
	memset(fake_state, 0, sizeof(fake_state));
	memset(fake_flags, 0, sizeof(fake_flags));
	state_looks = 0;
	seen.answer = ACT_REPORT;
	*l = loop_new();
	assert_non_null(*l);
	return zwatch_new(*l, grace_ms * MS, max, &h);
}

static struct exit_event exit_rec(uint32_t type, pid_t pid, uint64_t ts)
{
	struct exit_event r = {.type = type, .pid = pid, .ppid = 1, .ts_ns = ts, .start_ns = 7};

	strcpy(r.comm, "child");
	return r;
}

static void watcher_reports_at_the_deadline(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_EXIT, 20, 1000 * MS);

	(void)state;
	fake_state[20] = 'Z';
	zwatch_exit(w, &e);
	zwatch_run_due(w, 1199 * MS);
	assert_int_equal(seen.zombies, 0);
	zwatch_run_due(w, 1200 * MS);
	assert_int_equal(seen.zombies, 1);
	assert_true(seen.last == 20 && seen.last_act);
	/* its reap, announced: zombie_reaped */
	e = exit_rec(REV_EV_REAP, 20, 1500 * MS);
	zwatch_reap(w, &e);
	assert_int_equal(seen.reaped, 1);
	assert_int_equal(zwatch_count(w), 0);
	zwatch_free(w);
	loop_free(l);
}

static void watcher_silent_for_a_reap_in_time(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_EXIT, 21, 1000 * MS);

	(void)state;
	fake_state[21] = 'Z';
	zwatch_exit(w, &e);
	e = exit_rec(REV_EV_REAP, 21, 1100 * MS);
	zwatch_reap(w, &e);
	zwatch_run_due(w, 5000 * MS);
	assert_int_equal(seen.zombies + seen.reaped, 0);
	zwatch_free(w);
	loop_free(l);
}

/* A nudged zombie is watched once more: reported as persisting (no policy), or gone. */
static void watcher_nudge_then_persisting(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_EXIT, 22, 1000 * MS);

	(void)state;
	fake_state[22] = 'Z';
	seen.answer = ACT_NUDGE;
	zwatch_exit(w, &e);
	zwatch_run_due(w, 1200 * MS);
	assert_int_equal(seen.zombies, 1);
	assert_true(seen.last_act);
	zwatch_run_due(w, 1399 * MS);
	assert_int_equal(seen.zombies, 1);
	zwatch_run_due(w, 1400 * MS);
	assert_int_equal(seen.zombies, 2);
	assert_false(seen.last_act); /* the parent had its chance */
	zwatch_free(w);
	loop_free(l);
}

/* At the deadline the process is gone (its reap record was lost): an announced zombie gets its
 * zombie_reaped now, a never-announced exit goes quietly. A process still exiting is looked at
 * again instead of being called a zombie. */
static void watcher_gone_and_still_exiting(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event a = exit_rec(REV_EV_EXIT, 23, 1000 * MS);
	struct exit_event b = exit_rec(REV_EV_EXIT, 24, 1000 * MS);

	(void)state;
	fake_state[23] = 0;   /* gone */
	fake_state[24] = 'R'; /* still tearing down */
	fake_flags[24] = 0x4; /* PF_EXITING */
	zwatch_exit(w, &a);
	zwatch_exit(w, &b);
	zwatch_run_due(w, 1200 * MS);
	assert_int_equal(seen.zombies + seen.reaped, 0);
	assert_int_equal(zwatch_count(w), 1); /* 23 forgotten, 24 watched again */
	fake_state[24] = 'Z';
	zwatch_run_due(w, 1400 * MS);
	assert_int_equal(seen.zombies, 1);
	assert_int_equal(seen.last, 24);
	fake_state[24] = 0; /* reaped, record lost: zombie_reaped at the next look */
	zwatch_free(w);
	loop_free(l);
}

/* Found only at its reap, long after the grace (the agent was behind): reported late, without
 * the policy, and its reap follows. */
static void watcher_late_report_at_reap(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_EXIT, 25, 1000 * MS);

	(void)state;
	zwatch_exit(w, &e);
	e = exit_rec(REV_EV_REAP, 25, 2000 * MS);
	zwatch_reap(w, &e);
	assert_int_equal(seen.zombies, 1);
	assert_false(seen.last_act);
	assert_int_equal(seen.reaped, 1);
	zwatch_free(w);
	loop_free(l);
}

/* A shorter grace after a reload: the timer moves to the earlier deadline of a new exit. */
static void watcher_rearms_for_an_earlier_deadline(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 20000, 100);
	uint64_t t0 = mono_ns();
	struct exit_event a = exit_rec(REV_EV_EXIT, 40, t0), b = exit_rec(REV_EV_EXIT, 41, t0);

	(void)state;
	zwatch_exit(w, &a);
	assert_int_equal(zwatch_armed_for(w), t0 + 20000 * MS);
	zwatch_set_grace(w, 200 * MS);
	zwatch_exit(w, &b);
	assert_int_equal(zwatch_armed_for(w), t0 + 200 * MS);
	zwatch_free(w);
	loop_free(l);
}

static void watcher_full_table_is_said(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 2);

	(void)state;
	for (pid_t p = 30; p < 35; p++) {
		struct exit_event e = exit_rec(REV_EV_EXIT, p, 1000 * MS);

		zwatch_exit(w, &e);
	}
	assert_int_equal(seen.lost, 2); /* said at the 1st and 2nd; the 3rd waits for the 4th */
	zwatch_free(w);
	loop_free(l);
}

/* The kernel kept the grace: its zombie record is reported at once, and the nudge's second
 * watch, the report's reap and a parent reaping after the nudge work as for userspace's exits. */
static void watcher_kernel_zombie_record(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_ZOMBIE, 30, 1000 * MS);

	(void)state;
	fake_state[30] = 'Z';
	zwatch_zombie(w, &e, 1201 * MS);
	assert_int_equal(seen.zombies, 1);
	assert_true(seen.last == 30 && seen.last_act);
	assert_int_equal(zwatch_count(w), 1); /* kept for its reap record */
	zwatch_run_due(w, 9000 * MS);
	assert_int_equal(seen.zombies, 1); /* reported once */
	e = exit_rec(REV_EV_REAP, 30, 9100 * MS);
	zwatch_reap(w, &e);
	assert_int_equal(seen.reaped, 1);
	assert_int_equal(zwatch_count(w), 0);

	/* nudged, then reaped by its parent within the second grace */
	seen.answer = ACT_NUDGE;
	fake_state[31] = 'Z';
	e = exit_rec(REV_EV_ZOMBIE, 31, 10000 * MS);
	zwatch_zombie(w, &e, 10200 * MS);
	assert_int_equal(seen.zombies, 2);
	e = exit_rec(REV_EV_REAP, 31, 10300 * MS);
	zwatch_reap(w, &e);
	assert_int_equal(seen.reaped, 2);
	zwatch_run_due(w, 20000 * MS);
	assert_int_equal(seen.zombies, 2);

	/* nudged and still there a grace later: reported as persisting, without the policy */
	fake_state[32] = 'Z';
	e = exit_rec(REV_EV_ZOMBIE, 32, 30000 * MS);
	zwatch_zombie(w, &e, 30200 * MS);
	assert_int_equal(seen.zombies, 3);
	zwatch_run_due(w, 30400 * MS);
	assert_int_equal(seen.zombies, 4);
	assert_false(seen.last_act);
	zwatch_free(w);
	loop_free(l);
}

/* A zombie record is the kernel's own look at the deadline: reported without reading /proc (which
 * here would say "gone"). A nudge's second look is ours: /proc is read then. */
static void watcher_trusts_the_kernels_look(void **state)
{
	struct loop *l;
	struct zwatch *w = watcher(&l, 200, 100);
	struct exit_event e = exit_rec(REV_EV_ZOMBIE, 33, 1000 * MS);

	(void)state;
	seen.answer = ACT_NUDGE;
	zwatch_zombie(w, &e, 1200 * MS);
	assert_int_equal(seen.zombies, 1);
	assert_int_equal(state_looks, 0);
	zwatch_run_due(w, 1400 * MS); /* the second grace: /proc says it is gone now */
	assert_int_equal(state_looks, 1);
	assert_int_equal(seen.zombies, 1);
	assert_int_equal(seen.reaped, 1);
	assert_int_equal(zwatch_count(w), 0);
	zwatch_free(w);
	loop_free(l);
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
		cmocka_unit_test(lower_grace_reorders_deadlines),
		cmocka_unit_test(watcher_reports_at_the_deadline),
		cmocka_unit_test(watcher_silent_for_a_reap_in_time),
		cmocka_unit_test(watcher_nudge_then_persisting),
		cmocka_unit_test(watcher_gone_and_still_exiting),
		cmocka_unit_test(watcher_late_report_at_reap),
		cmocka_unit_test(watcher_full_table_is_said),
		cmocka_unit_test(watcher_rearms_for_an_earlier_deadline),
		cmocka_unit_test(watcher_kernel_zombie_record),
		cmocka_unit_test(watcher_trusts_the_kernels_look),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
