// SPDX-License-Identifier: MIT
/* The event loop: epoll over registered fds plus one timerfd re-armed for the earliest timer.
 * Owns no module state; callbacks get the ctx they registered. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/loop.h"
#include "lib/util.h"

struct fd_slot {
	loop_fd_cb cb;
	void *ctx;
	bool used;
};

struct loop {
	int epfd;
	int tfd;
	struct fd_slot *slots; /* indexed by fd */
	int n_slots;
	struct loop_timer *timers; /* sorted by deadline, earliest first */
	uint64_t armed_for;	   /* deadline the timerfd is set to, 0 = disarmed */
	loop_hook_cb before_wait;
	void *before_wait_ctx;
	bool stop;
	int code;
	uint64_t wakeups; /* epoll_wait returns with work: what a host's background costs us */
};

uint64_t loop_wakeups(const struct loop *l)
{
	return l ? l->wakeups : 0;
}

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void rearm(struct loop *l)
{
	struct itimerspec its = {0};
	uint64_t d = l->timers ? l->timers->deadline_ns : 0;

	if (d == l->armed_for)
		return;
	if (d) {
		its.it_value.tv_sec = d / 1000000000ull;
		its.it_value.tv_nsec = d % 1000000000ull;
	}
	timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
	l->armed_for = d;
}

static void on_timerfd(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t expirations, now;

	(void)events;
	(void)ctx;
	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		return;
	l->armed_for = 0;
	now = mono_ns();
	/* A callback may arm or cancel timers, including this one: unlink before calling. */
	while (l->timers && l->timers->deadline_ns <= now && !l->stop) {
		struct loop_timer *t = l->timers;

		loop_timer_cancel(l, t);
		t->cb(l, t->ctx);
	}
	rearm(l);
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (l->epfd < 0 || l->tfd < 0 || loop_add_fd(l, l->tfd, EPOLLIN, on_timerfd, NULL)) {
		int err = errno;

		loop_free(l);
		errno = err;
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->tfd >= 0)
		close(l->tfd);
	free(l->slots);
	free(l);
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *ctx)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (fd < 0)
		return -EBADF;
	if (fd >= l->n_slots) {
		int n = fd + 64;
		struct fd_slot *s = realloc(l->slots, n * sizeof(*s));

		if (!s)
			return -ENOMEM;
		memset(s + l->n_slots, 0, (n - l->n_slots) * sizeof(*s));
		l->slots = s;
		l->n_slots = n;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	l->slots[fd] = (struct fd_slot){.cb = cb, .ctx = ctx, .used = true};
	return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
}

int loop_del_fd(struct loop *l, int fd)
{
	if (fd < 0 || fd >= l->n_slots || !l->slots[fd].used)
		return -ENOENT;
	l->slots[fd].used = false;
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) ? -errno : 0;
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *ctx)
{
	memset(t, 0, sizeof(*t));
	t->cb = cb;
	t->ctx = ctx;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	if (!t->armed)
		return;
	if (t->prev)
		t->prev->next = t->next;
	else
		l->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->armed = false;
}

int loop_timer_at(struct loop *l, struct loop_timer *t, uint64_t deadline_ns)
{
	struct loop_timer **pp = &l->timers, *prev = NULL;

	loop_timer_cancel(l, t);
	if (!deadline_ns)
		deadline_ns = 1; /* 0 means "disarmed" to the timerfd */
	while (*pp && (*pp)->deadline_ns <= deadline_ns) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	t->deadline_ns = deadline_ns;
	t->prev = prev;
	t->next = *pp;
	if (*pp)
		(*pp)->prev = t;
	*pp = t;
	t->armed = true;
	rearm(l);
	return 0;
}

int loop_timer_after_ms(struct loop *l, struct loop_timer *t, uint64_t ms)
{
	return loop_timer_at(l, t, mono_ns() + ms_to_ns(ms));
}

bool loop_busy(struct loop *l)
{
	struct epoll_event ev;

	return epoll_wait(l->epfd, &ev, 1, 0) > 0;
}

void loop_stop(struct loop *l, int code)
{
	l->stop = true;
	l->code = code;
}

void loop_set_before_wait(struct loop *l, loop_hook_cb cb, void *ctx)
{
	l->before_wait = cb;
	l->before_wait_ctx = ctx;
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[32];

	while (!l->stop) {
		int n;

		if (l->before_wait)
			l->before_wait(l, l->before_wait_ctx);
		if (l->stop)
			break;
		n = epoll_wait(l->epfd, evs, 32, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		l->wakeups++;
		for (int i = 0; i < n && !l->stop; i++) {
			int fd = evs[i].data.fd;

			/* An earlier callback of this batch may have removed this fd. */
			if (fd < l->n_slots && l->slots[fd].used)
				l->slots[fd].cb(l, fd, evs[i].events, l->slots[fd].ctx);
		}
	}
	return l->code;
}
