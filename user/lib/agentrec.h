/* SPDX-License-Identifier: MIT */
/* The host's agent record (/run/revenant/agent): the running agent names its control socket, pin
 * directory, log and config there, so commands given no -c find it, whatever config it runs. */
#ifndef REVENANT_AGENTREC_H
#define REVENANT_AGENTREC_H

#include <sys/types.h>

#include "lib/util.h"

#define REV_AGENT_RECORD_NAME "agent"
#define REV_AGENT_RECORD "/run/revenant/" REV_AGENT_RECORD_NAME
/* Where the record lives instead (tests, several agents on one host for development). */
#define REV_AGENT_RECORD_ENV "REVENANT_AGENT_RECORD"

struct agent_rec {
	pid_t pid;
	char control[REV_PATH_BUF]; /* control socket: its directory holds agent.lock, state.json */
	char pin[REV_PATH_BUF];	    /* pin directory (listeners map, iterators) */
	char log[REV_PATH_BUF];	    /* event log */
	char config[REV_PATH_BUF];  /* the config file it runs */
};

/* The record's path: $REVENANT_AGENT_RECORD, else REV_AGENT_RECORD. */
const char *agentrec_path(void);

/* For the agent: become the host's agent unless a live one already is. Returns an fd that holds
 * the record's lock (keep it open while running), -EBUSY with *owner set when another live
 * agent holds it, or -errno. */
int agentrec_claim(const struct agent_rec *r, pid_t *owner);
/* At a clean stop: the record goes, then its lock. */
void agentrec_release(int fd);

/* For commands: the live agent's record. 0, -ENOENT (none, or its agent is gone), or -errno. A
 * record is believed only while its agent holds the record's lock, and only if root (or the
 * caller) wrote it. */
int agentrec_find(struct agent_rec *r);

#endif
