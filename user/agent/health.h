/* SPDX-License-Identifier: MIT */
/* Health probes: one non-blocking TCP connect or HTTP GET against 127.0.0.1:PORT, driven by the
 * loop, ending in one callback (ok or not, with a detail) within the timeout. */
#ifndef REVENANT_HEALTH_H
#define REVENANT_HEALTH_H

#include <stdbool.h>

#include "lib/config.h"
#include "lib/loop.h"

typedef void (*probe_done_cb)(void *ctx, bool ok, const char *detail);

struct probe;

/* NULL with errno on immediate failure (the callback is not called then). */
struct probe *probe_start(struct loop *l, const struct health_config *h, int port,
			  probe_done_cb cb, void *ctx);
/* Abandon a probe in flight; its callback will not run. */
void probe_cancel(struct probe *p);

/* Parses "HTTP/1.x NNN" at the start of buf: the status code, or -1. */
int probe_http_status(const char *buf, size_t len);

#endif
