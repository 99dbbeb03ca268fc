/* SPDX-License-Identifier: MIT */
/* The control socket: AF_UNIX SOCK_SEQPACKET at control.socket, mode 0600, root peers only
 * (SO_PEERCRED on every request). One JSON request (one message), one JSON response: one message
 * when it is under CONTROL_MAX_MSG bytes, else a series of chunk messages, each a marker byte
 * (CONTROL_CHUNK_MORE, then CONTROL_CHUNK_LAST on the final one) and up to CONTROL_MAX_MSG - 1
 * bytes of the JSON text, which the client joins. */
#ifndef REVENANT_CONTROL_H
#define REVENANT_CONTROL_H

#include <stddef.h>
#include <cjson/cJSON.h>

#include "lib/loop.h"
#include "agent/supervisor.h"

#define CONTROL_MAX_MSG 65536
#define CONTROL_CHUNK_MORE '+'
#define CONTROL_CHUNK_LAST '.'
#define CONTROL_MAX_REPLY (64 * 1024 * 1024) /* what a client joins at most */
#define CONTROL_MAX_CLIENTS 64		     /* at once; more wait in the backlog */
#define CONTROL_REQUEST_MS 5000		     /* a request must come within this of the connect */
#define CONTROL_WRITE_MS 10000		     /* a client must take its answer this fast */

struct control;

struct control *control_open(struct loop *l, const char *path, struct supervisor *sup, char *err,
			     size_t errlen);
void control_close(struct control *c);

/* Parse one request message: an object with a string "cmd". NULL and a message in err when it is
 * not one. (The fuzzer's entry point.) */
cJSON *control_parse_request(const char *buf, size_t len, char *err, size_t errlen);

/* Client: send req to the agent at path, wait up to timeout_ms for the response.
 * -ENOENT/-ECONNREFUSED: no agent; -EACCES: not permitted; -ETIMEDOUT. */
int control_call(const char *path, const cJSON *req, int timeout_ms, cJSON **resp);

#endif
