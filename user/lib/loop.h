/* SPDX-License-Identifier: MIT */
/* The one event loop (after redis ae): modules register fds with a callback, and timers with an
 * absolute CLOCK_MONOTONIC deadline; one timerfd is armed for the earliest. Nothing else waits. */
#ifndef REVENANT_LOOP_H
#define REVENANT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *ctx);
typedef void (*loop_timer_cb)(struct loop *l, void *ctx);
typedef void (*loop_hook_cb)(struct loop *l, void *ctx);

/* Embedded in its owner; the loop links it into a list sorted by deadline. */
struct loop_timer {
	uint64_t deadline_ns;
	loop_timer_cb cb;
	void *ctx;
	struct loop_timer *prev, *next;
	bool armed;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *ctx);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
int loop_del_fd(struct loop *l, int fd);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *ctx);
/* (Re)arm t for the absolute deadline; an armed timer is moved. */
int loop_timer_at(struct loop *l, struct loop_timer *t, uint64_t deadline_ns);
int loop_timer_after_ms(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* Whether some registered fd (or a due timer) is ready right now. Every fd is level-triggered, so
 * asking consumes nothing. Long work done in steps (the status page's fan-out to its clients)
 * asks between steps and gives way, so that a kernel record never waits behind it. */
bool loop_busy(struct loop *l);

/* Called before each wait, after the callbacks of the previous wake-up (redis' beforeSleep): a
 * module that reports a summary of the state (the service manager's STATUS=) looks once per
 * batch of events, not once per event. One hook; NULL removes it. */
void loop_set_before_wait(struct loop *l, loop_hook_cb cb, void *ctx);

/* Runs until loop_stop(); returns the code given to it. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l, int code);

/* Times epoll_wait returned with something to do, since loop_new. */
uint64_t loop_wakeups(const struct loop *l);

uint64_t mono_ns(void);

#endif
