/* SPDX-License-Identifier: MIT */
/* The service manager's notification protocol (systemd's sd_notify, spoken directly): READY=1,
 * STATUS=, STOPPING=1 and the WATCHDOG=1 keep-alive, each one datagram to $NOTIFY_SOCKET. Without
 * $NOTIFY_SOCKET every call does nothing, so the agent makes them unconditionally. */
#ifndef REVENANT_NOTIFY_H
#define REVENANT_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "lib/loop.h"

/* Writes the one-line summary for STATUS= into buf (e.g. "3/4 services up, 0 zombies"). */
typedef void (*notify_status_fn)(void *ctx, char *buf, size_t len);

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from the environment (the
 * services the agent starts must not talk to the service manager in its name), then opens the
 * socket. Call before anything forks. 0 (also when not run under a service manager) or -errno;
 * a bad variable is said on stderr and notification stays off. */
int notify_init(void);

/* READY=1 with the first STATUS=. From then on STATUS= is sent whenever fn's text changes
 * (looked at once before each wait of the loop), and WATCHDOG=1 every half of WATCHDOG_USEC when
 * the service manager asked for it; nothing wakes the loop otherwise. */
void notify_ready(struct loop *l, notify_status_fn fn, void *ctx);

/* STOPPING=1 (once; later calls do nothing) with a last STATUS=. */
void notify_stopping(const char *why);

/* Stops the watchdog timer and the status hook, closes the socket. */
void notify_close(void);

/* Pure parts, for the unit tests. */
/* NOTIFY_SOCKET as an address: "/path" or "@abstract". 0 or -EINVAL / -ENAMETOOLONG / -EAFNOSUPPORT
 * (vsock: and other schemes). */
int notify_parse_addr(const char *s, struct sockaddr_un *sa, socklen_t *len);
/* The keep-alive interval in µs, or 0 when there is none for this process: WATCHDOG_USEC unset,
 * or WATCHDOG_PID naming another process. -EINVAL for a malformed value. */
int64_t notify_parse_watchdog(const char *usec, const char *pid, pid_t self);

#endif
