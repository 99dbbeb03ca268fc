// SPDX-License-Identifier: MIT
/* The event schema: every type encodes with its fields in table order, names are unique and
 * match the contract, enums are written by name, and `tail` rows come from the same table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cmd/tail.h"
#include "lib/events.h"

static void every_type_has_a_unique_name_and_fields(void **state)
{
	(void)state;
	for (int t = 0; t < EV_NTYPES; t++) {
		const struct ev_schema *s = ev_schema(t);

		assert_non_null(s);
		assert_int_equal(ev_type_of(s->name), t);
		assert_true(s->n_fields > 0);
		for (size_t i = 0; i < s->n_fields; i++) {
			assert_true(strcmp(s->fields[i].name, "ts") && strcmp(s->fields[i].name, "type"));
			for (size_t j = i + 1; j < s->n_fields; j++)
				assert_true(strcmp(s->fields[i].name, s->fields[j].name));
		}
	}
	assert_null(ev_schema(EV_NTYPES));
	assert_int_equal(ev_type_of("no_such_type"), -1);
}

/* Every field of every type appears in the encoding (or is left out only when marked so). */
static void every_field_is_encoded(void **state)
{
	(void)state;
	for (int t = 0; t < EV_NTYPES; t++) {
		struct event e;
		const struct ev_schema *s = ev_schema(t);
		cJSON *o;

		memset(&e, 0, sizeof(e));
		e.type = t;
		o = ev_encode(&e);
		assert_non_null(o);
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "type")->valuestring, s->name);
		for (size_t i = 0; i < s->n_fields; i++)
			if (!(s->fields[i].flags & EVF_OMIT))
				assert_non_null(cJSON_GetObjectItemCaseSensitive(o, s->fields[i].name));
		cJSON_Delete(o);
	}
}

/* The README promises owner_comm on every port_migrated: present (null when nobody can be
 * named), and given when the owner is known. */
static void port_migrated_always_carries_owner_comm(void **state)
{
	struct event e = {.type = EV_PORT_MIGRATED};
	cJSON *o;

	(void)state;
	e.port_migrated = (struct ev_port_migrated){.service = "api", .from = 1, .to = 2};
	o = ev_encode(&e);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "owner_pid")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "owner_comm")));
	cJSON_Delete(o);
	e.port_migrated.owner_pid = 42;
	e.port_migrated.owner_comm = "squatter";
	o = ev_encode(&e);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "owner_pid")->valueint, 42);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "owner_comm")->valuestring,
			    "squatter");
	cJSON_Delete(o);
}

static void enums_by_name_and_nullable_numbers(void **state)
{
	struct event e = {.type = EV_SERVICE_RESTART};
	cJSON *o;

	(void)state;
	e.service_restart = (struct ev_service_restart){
		.service = "a", .attempt = 2, .delay_ms = 500, .reason = RESTART_ZOMBIE_POLICY};
	o = ev_encode(&e);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "reason")->valuestring,
			    "zombie_policy");
	cJSON_Delete(o);

	e = (struct event){.type = EV_SERVICE_EXIT};
	e.service_exit = (struct ev_service_exit){.service = "a", .pid = 9, .code = -1,
						  .signal = "SIGKILL"};
	o = ev_encode(&e);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "code")));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "signal")->valuestring, "SIGKILL");
	cJSON_Delete(o);

	e = (struct event){.type = EV_AGENT_START};
	e.agent_start.mounted = "tracefs,bpffs";
	o = ev_encode(&e);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "mounted")), 2);
	cJSON_Delete(o);

	e = (struct event){.type = EV_ZOMBIE};
	o = ev_encode(&e);
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "existing")); /* only when true */
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "action")->valuestring, "report");
	cJSON_Delete(o);

	assert_string_equal(ev_action_name(ACT_N), "?");
	assert_string_equal(stop_reason_name(STOP_SIGTERM), "SIGTERM");
}

static char *row_of(const char *line)
{
	struct evline ev = {0};
	char *row;

	ev.obj = cJSON_Parse(line);
	assert_non_null(ev.obj);
	ev.type = cJSON_GetObjectItemCaseSensitive(ev.obj, "type")->valuestring;
	row = tail_format_row(&ev);
	cJSON_Delete(ev.obj);
	return row;
}

/* tail prints the fields in the schema's order, without the quiet ones; a type it does not
 * know is shown whole. */
static void tail_rows_follow_the_schema(void **state)
{
	char *row;

	(void)state;
	row = row_of("{\"ts\":\"2026-11-30T00:00:00.000000Z\",\"type\":\"service_start\","
		     "\"command\":\"x\",\"port\":8000,\"pid\":7,\"service\":\"api\"}");
	assert_non_null(strstr(row, " service=api pid=7 port=8000\n"));
	assert_null(strstr(row, "command="));
	free(row);
	row = row_of("{\"ts\":\"2026-11-30T00:00:00.000000Z\",\"type\":\"from_the_future\","
		     "\"a\":1,\"b\":\"x\"}");
	assert_non_null(strstr(row, " a=1 b=x\n"));
	free(row);
}

/* killed_by is one nested object of the same table (null when not known); oom and core_dumped
 * are always there; rows show the object compactly and hide false oom/core_dumped. */
static void service_exit_cause_fields(void **state)
{
	struct event e = {.type = EV_SERVICE_EXIT};
	const cJSON *by;
	cJSON *o;
	char *line, *row;

	(void)state;
	e.service_exit = (struct ev_service_exit){.service = "a", .pid = 9, .code = 0};
	o = ev_encode(&e);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "killed_by")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "oom")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "core_dumped")));
	cJSON_Delete(o);

	e.service_exit.code = -1;
	e.service_exit.signal = "SIGKILL";
	e.service_exit.oom = true;
	e.service_exit.killed_by =
		(struct ev_sender){.known = true, .pid = 42, .comm = "bash", .uid = 1000};
	o = ev_encode(&e);
	by = cJSON_GetObjectItemCaseSensitive(o, "killed_by");
	assert_true(cJSON_IsObject(by));
	assert_int_equal(cJSON_GetArraySize(by), 3); /* agent and kernel only when true */
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(by, "pid")->valueint, 42);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(by, "comm")->valuestring, "bash");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(by, "uid")->valueint, 1000);
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	row = row_of(line);
	assert_non_null(strstr(row, " killed_by={\"pid\":42,\"comm\":\"bash\",\"uid\":1000} oom=true"));
	assert_null(strstr(row, "core_dumped"));
	free(row);
	free(line);

	e.service_exit.killed_by = (struct ev_sender){.known = true, .kernel = true};
	o = ev_encode(&e);
	by = cJSON_GetObjectItemCaseSensitive(o, "killed_by");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(by, "pid")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(by, "kernel")));
	cJSON_Delete(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_type_has_a_unique_name_and_fields),
		cmocka_unit_test(every_field_is_encoded),
		cmocka_unit_test(port_migrated_always_carries_owner_comm),
		cmocka_unit_test(enums_by_name_and_nullable_numbers),
		cmocka_unit_test(tail_rows_follow_the_schema),
		cmocka_unit_test(service_exit_cause_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
