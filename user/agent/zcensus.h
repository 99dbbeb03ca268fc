/* SPDX-License-Identifier: MIT */
/* The zombies that exist now as far as the agent has said (a `zombie` event logged, no
 * `zombie_reaped` yet), with their parent's comm and service: the revenant_zombies gauges and the
 * count in the service manager's STATUS= line. Process-wide, like the metrics counters. */
#ifndef REVENANT_ZCENSUS_H
#define REVENANT_ZCENSUS_H

#include <stddef.h>
#include <sys/types.h>

/* A zombie was announced (again: the entry is updated, never counted twice). 0 or -ENOMEM. */
int zcensus_add(pid_t pid, const char *parent_comm, const char *service);
/* Its reap was logged; a pid not in the census is ignored. */
void zcensus_del(pid_t pid);
size_t zcensus_count(void);

/* Drops entries whose process is no longer a zombie (a reap record lost in an overflow would
 * otherwise hold a gauge up for ever), then writes the revenant_zombies{parent_comm,service}
 * family into buf: one series per pair, the largest first, at most 100 (the rest are summed into
 * parent_comm="(other)"). Returns the length written, never more than len. */
size_t zcensus_metrics(char *buf, size_t len);

void zcensus_free(void);

#endif
