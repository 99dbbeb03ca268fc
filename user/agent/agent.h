/* SPDX-License-Identifier: MIT */
/* `revenant run`: the agent. Wires config, event log, sensor, zombie tracker and supervisor into
 * the loop, and turns kernel records into events. */
#ifndef REVENANT_AGENT_H
#define REVENANT_AGENT_H

int cmd_run(int argc, char **argv);

#endif
