/* SPDX-License-Identifier: MIT */
/* The commands that drive or check the stack: status, start, stop, restart (through the agent's
 * control socket), and verify, cleanup, kill-port (which also work without an agent). */
#ifndef REVENANT_CTL_H
#define REVENANT_CTL_H

int cmd_status(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_cleanup(int argc, char **argv);
int cmd_kill_port(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_port(int argc, char **argv);

#endif
