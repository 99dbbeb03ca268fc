// SPDX-License-Identifier: MIT
/* libFuzzer target: the control-protocol parser (control_parse_request) on arbitrary messages, as
 * a peer of the control socket could send them. Accepted requests must be objects with a string
 * "cmd"; rejections must say why; nothing may crash, leak or read past the message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	/* An exact-size copy: the parser takes a length, and ASan catches any read past it. */
	char *msg = malloc(size ? size : 1);
	cJSON *req;

	if (!msg)
		return 0;
	memcpy(msg, data, size);
	err[0] = 0;
	req = control_parse_request(msg, size, err, sizeof(err));
	if (req) {
		const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");

		if (!cJSON_IsObject(req) || !cJSON_IsString(cmd))
			abort();
		cJSON_Delete(req);
	} else if (!err[0]) {
		abort();
	}
	free(msg);
	return 0;
}
