// SPDX-License-Identifier: MIT
/* libFuzzer target: the config loader (config_parse) on arbitrary text. It must reject or accept
 * every input with a message, never crash, leak or read out of bounds; an accepted config must be
 * whole enough for the start order to be computed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rev_config cfg;
	char err[1024];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0; /* the loader reads a NUL-terminated file */
	if (config_parse(text, "/tmp/revenant-fuzz/revenant.json", &cfg, err, sizeof(err)) == 0) {
		int *order = malloc((cfg.n_services + 1) * sizeof(*order));

		if (order && config_start_order(&cfg, order))
			abort(); /* config_parse promised no dependency cycle */
		free(order);
	} else if (!memchr(err, 0, sizeof(err)) || !err[0]) {
		abort(); /* a rejection always says why */
	}
	config_free(&cfg);
	free(text);
	return 0;
}
