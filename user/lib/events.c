// SPDX-License-Identifier: MIT
/* The event schema as data: one field table per event type (the only place the JSON names of
 * the log live), one encoder that walks it, and the name tables of the enums modules exchange. */
#include <stdlib.h>
#include <string.h>

#include "lib/events.h"
#include "lib/log.h"
#include "lib/util.h"

static const char *const action_names[ACT_N] = {
	[ACT_REPORT] = "report",	 [ACT_NUDGE] = "nudge",
	[ACT_RESTART_PARENT] = "restart_parent", [ACT_MIGRATE] = "migrate",
	[ACT_REPLACE] = "replace",
};

static const char *const restart_names[RESTART_N] = {
	[RESTART_EXIT] = "exit",
	[RESTART_UNHEALTHY] = "unhealthy",
	[RESTART_ZOMBIE_POLICY] = "zombie_policy",
	[RESTART_REQUESTED] = "requested",
	[RESTART_COLLISION] = "port_collision",
	[RESTART_DEPENDENCY_MOVED] = "dependency_moved",
	[RESTART_DEPENDENCY_RESTARTED] = "dependency_restarted",
	[RESTART_RELOAD] = "reload",
};

static const char *const stop_names[STOP_N] = {
	[STOP_SIGTERM] = "SIGTERM",
	[STOP_SIGINT] = "SIGINT",
	[STOP_CRITICAL] = "critical service gave up",
	[STOP_ERROR] = "error",
};

static const char *const syscall_names[EVSYS_N] = {
	[EVSYS_BIND] = "bind",
	[EVSYS_LISTEN] = "listen",
};

/* Enums are written by name: the encoder reads them as int. */
_Static_assert(sizeof(enum ev_action) == sizeof(int) && sizeof(enum restart_reason) == sizeof(int) &&
		       sizeof(enum stop_reason) == sizeof(int) && sizeof(enum ev_syscall) == sizeof(int),
	       "enum fields are ints");

#define F(T, name, member, kind, flags)                                                            \
	{name, kind, flags, offsetof(struct T, member), NULL, 0, NULL, 0}
#define E(T, name, member, flags, table)                                                           \
	{name, EVF_ENUM, flags, offsetof(struct T, member), table, ARRAY_SIZE(table), NULL, 0}
#define O(T, name, member, flags, table)                                                           \
	{name, EVF_OBJ, flags, offsetof(struct T, member), NULL, 0, table, ARRAY_SIZE(table)}
#define SOCK(T)                                                                                    \
	F(T, "port", sock.port, EVF_INT, 0), F(T, "proto", sock.proto, EVF_STR, 0),                \
	    F(T, "addr", sock.addr, EVF_STR, 0),                                                   \
	    F(T, "family", sock.family, EVF_STR, EVF_QUIET),                                       \
	    F(T, "netns", sock.netns, EVF_INT, EVF_QUIET)

static const struct ev_field agent_start_f[] = {
	F(ev_agent_start, "version", version, EVF_STR, 0),
	F(ev_agent_start, "config", config, EVF_STR, EVF_QUIET),
	F(ev_agent_start, "pid", pid, EVF_INT, 0),
	F(ev_agent_start, "pin", pin, EVF_STR, EVF_QUIET),
	F(ev_agent_start, "mounted", mounted, EVF_LIST, EVF_QUIET),
};

static const struct ev_field agent_stop_f[] = {
	E(ev_agent_stop, "reason", reason, 0, stop_names),
};

static const struct ev_field agent_reload_f[] = {
	F(ev_agent_reload, "config", config, EVF_STR, EVF_QUIET),
	F(ev_agent_reload, "ok", ok, EVF_BOOL, 0),
	F(ev_agent_reload, "detail", detail, EVF_STR, 0),
};

static const struct ev_field zombie_f[] = {
	F(ev_zombie, "pid", pid, EVF_INT, 0),
	F(ev_zombie, "ppid", ppid, EVF_INT, 0),
	F(ev_zombie, "comm", comm, EVF_STR, 0),
	F(ev_zombie, "parent_comm", parent_comm, EVF_STR, 0),
	F(ev_zombie, "age_ms", age_ms, EVF_INT, 0),
	F(ev_zombie, "service", service, EVF_STR, 0),
	E(ev_zombie, "action", action, 0, action_names),
	F(ev_zombie, "existing", existing, EVF_BOOL, EVF_OMIT),
};

static const struct ev_field zombie_reaped_f[] = {
	F(ev_zombie_reaped, "pid", pid, EVF_INT, 0),
	F(ev_zombie_reaped, "ppid", ppid, EVF_INT, 0),
	F(ev_zombie_reaped, "comm", comm, EVF_STR, 0),
	F(ev_zombie_reaped, "age_ms", age_ms, EVF_INT, 0),
	F(ev_zombie_reaped, "service", service, EVF_STR, 0),
};

static const struct ev_field port_collision_f[] = {
	SOCK(ev_port_collision),
	F(ev_port_collision, "pid", pid, EVF_INT, 0),
	F(ev_port_collision, "ppid", ppid, EVF_INT, 0),
	F(ev_port_collision, "comm", comm, EVF_STR, 0),
	F(ev_port_collision, "service", service, EVF_STR, 0),
	F(ev_port_collision, "owner_pid", owner_pid, EVF_INT, EVF_NULL0),
	F(ev_port_collision, "owner_comm", owner_comm, EVF_STR, 0),
	F(ev_port_collision, "owner_service", owner_service, EVF_STR, 0),
	E(ev_port_collision, "syscall", syscall, 0, syscall_names),
	E(ev_port_collision, "action", action, 0, action_names),
};

static const struct ev_field port_f[] = {
	SOCK(ev_port),
	F(ev_port, "pid", pid, EVF_INT, 0),
	F(ev_port, "comm", comm, EVF_STR, 0),
	F(ev_port, "service", service, EVF_STR, 0),
};

static const struct ev_field port_migrated_f[] = {
	F(ev_port_migrated, "service", service, EVF_STR, 0),
	F(ev_port_migrated, "from", from, EVF_INT, 0),
	F(ev_port_migrated, "to", to, EVF_INT, 0),
	F(ev_port_migrated, "owner_pid", owner_pid, EVF_INT, EVF_NULL0),
	F(ev_port_migrated, "owner_comm", owner_comm, EVF_STR, 0),
};

static const struct ev_field service_start_f[] = {
	F(ev_service_start, "service", service, EVF_STR, 0),
	F(ev_service_start, "pid", pid, EVF_INT, 0),
	F(ev_service_start, "port", port, EVF_INT, EVF_NULL0),
	F(ev_service_start, "command", command, EVF_STR, EVF_QUIET),
};

static const struct ev_field sender_f[] = {
	F(ev_sender, "pid", pid, EVF_INT, EVF_NULL0),
	F(ev_sender, "comm", comm, EVF_STR, 0),
	F(ev_sender, "uid", uid, EVF_INT, 0),
	F(ev_sender, "agent", agent, EVF_BOOL, EVF_OMIT),
	F(ev_sender, "kernel", kernel, EVF_BOOL, EVF_OMIT),
};

static const struct ev_field service_exit_f[] = {
	F(ev_service_exit, "service", service, EVF_STR, 0),
	F(ev_service_exit, "pid", pid, EVF_INT, 0),
	F(ev_service_exit, "code", code, EVF_INT, EVF_NULLNEG),
	F(ev_service_exit, "signal", signal, EVF_STR, 0),
	F(ev_service_exit, "uptime_ms", uptime_ms, EVF_INT, EVF_QUIET),
	O(ev_service_exit, "killed_by", killed_by, 0, sender_f),
	F(ev_service_exit, "oom", oom, EVF_BOOL, EVF_QUIET_FALSE),
	F(ev_service_exit, "core_dumped", core_dumped, EVF_BOOL, EVF_QUIET_FALSE),
};

static const struct ev_field service_restart_f[] = {
	F(ev_service_restart, "service", service, EVF_STR, 0),
	F(ev_service_restart, "attempt", attempt, EVF_INT, 0),
	F(ev_service_restart, "delay_ms", delay_ms, EVF_INT, 0),
	E(ev_service_restart, "reason", reason, 0, restart_names),
	F(ev_service_restart, "dependency", dependency, EVF_STR, EVF_OMIT),
	F(ev_service_restart, "dependency_port", dependency_port, EVF_INT, EVF_OMIT),
};

static const struct ev_field service_give_up_f[] = {
	F(ev_service_give_up, "service", service, EVF_STR, 0),
	F(ev_service_give_up, "restarts", restarts, EVF_INT, EVF_QUIET),
	F(ev_service_give_up, "reason", reason, EVF_STR, 0),
	F(ev_service_give_up, "critical", critical, EVF_BOOL, EVF_QUIET),
};

static const struct ev_field service_leftover_f[] = {
	F(ev_service_leftover, "service", service, EVF_STR, 0),
	F(ev_service_leftover, "pid", pid, EVF_INT, 0),
	F(ev_service_leftover, "port", port, EVF_INT, EVF_NULL0),
	E(ev_service_leftover, "action", action, 0, action_names),
};

static const struct ev_field service_warning_f[] = {
	F(ev_service_warning, "service", service, EVF_STR, 0),
	F(ev_service_warning, "detail", detail, EVF_STR, 0),
};

static const struct ev_field health_f[] = {
	F(ev_health, "service", service, EVF_STR, 0),
	F(ev_health, "pid", pid, EVF_INT, 0),
	F(ev_health, "port", port, EVF_INT, 0),
	F(ev_health, "ok", ok, EVF_BOOL, 0),
	F(ev_health, "detail", detail, EVF_STR, 0),
};

static const struct ev_field events_lost_f[] = {
	F(ev_events_lost, "count", count, EVF_INT, 0),
	F(ev_events_lost, "reason", reason, EVF_STR, 0),
};

#define T(name, fields) {name, fields, ARRAY_SIZE(fields)}
static const struct ev_schema schemas[EV_NTYPES] = {
	[EV_AGENT_START] = T("agent_start", agent_start_f),
	[EV_AGENT_STOP] = T("agent_stop", agent_stop_f),
	[EV_AGENT_RELOAD] = T("agent_reload", agent_reload_f),
	[EV_ZOMBIE] = T("zombie", zombie_f),
	[EV_ZOMBIE_REAPED] = T("zombie_reaped", zombie_reaped_f),
	[EV_PORT_COLLISION] = T("port_collision", port_collision_f),
	[EV_PORT_LISTEN] = T("port_listen", port_f),
	[EV_PORT_RELEASE] = T("port_release", port_f),
	[EV_PORT_MIGRATED] = T("port_migrated", port_migrated_f),
	[EV_SERVICE_START] = T("service_start", service_start_f),
	[EV_SERVICE_EXIT] = T("service_exit", service_exit_f),
	[EV_SERVICE_RESTART] = T("service_restart", service_restart_f),
	[EV_SERVICE_GIVE_UP] = T("service_give_up", service_give_up_f),
	[EV_SERVICE_LEFTOVER] = T("service_leftover", service_leftover_f),
	[EV_SERVICE_WARNING] = T("service_warning", service_warning_f),
	[EV_HEALTH] = T("health", health_f),
	[EV_EVENTS_LOST] = T("events_lost", events_lost_f),
};

static uint64_t counts[EV_NTYPES];

const struct ev_schema *ev_schema(enum ev_type t)
{
	return (unsigned)t < EV_NTYPES ? &schemas[t] : NULL;
}

int ev_type_of(const char *name)
{
	for (int t = 0; t < EV_NTYPES; t++)
		if (!strcmp(schemas[t].name, name))
			return t;
	return -1;
}

const char *ev_type_name(enum ev_type t)
{
	return (unsigned)t < EV_NTYPES ? schemas[t].name : "?";
}

static const char *name_of(const char *const *names, size_t n, int v)
{
	return v >= 0 && (size_t)v < n && names[v] ? names[v] : "?";
}

const char *ev_action_name(enum ev_action a)
{
	return name_of(action_names, ACT_N, a);
}

const char *restart_reason_name(enum restart_reason r)
{
	return name_of(restart_names, RESTART_N, r);
}

const char *stop_reason_name(enum stop_reason r)
{
	return name_of(stop_names, STOP_N, r);
}

static cJSON *add_list(cJSON *o, const char *name, const char *csv)
{
	cJSON *arr = cJSON_AddArrayToObject(o, name);

	for (const char *p = csv; arr && p && *p;) {
		size_t n = strcspn(p, ",");
		char *item = strndup(p, n);

		if (item)
			cJSON_AddItemToArray(arr, cJSON_CreateString(item));
		free(item);
		p += n + (p[n] == ',');
	}
	return arr;
}

static void add_field(cJSON *o, const struct ev_field *f, const void *base)
{
	const char *p = (const char *)base + f->off;

	switch (f->kind) {
	case EVF_STR: {
		const char *s = *(const char *const *)p;

		if (s)
			cJSON_AddStringToObject(o, f->name, s);
		else if (!(f->flags & EVF_OMIT))
			cJSON_AddNullToObject(o, f->name);
		break;
	}
	case EVF_INT: {
		int64_t v;

		memcpy(&v, p, sizeof(v));
		if (((f->flags & EVF_NULL0) && v == 0) || ((f->flags & EVF_NULLNEG) && v < 0))
			cJSON_AddNullToObject(o, f->name);
		else if (!(v == 0 && (f->flags & EVF_OMIT)))
			cJSON_AddNumberToObject(o, f->name, (double)v);
		break;
	}
	case EVF_BOOL:
		if (*(const bool *)p || !(f->flags & EVF_OMIT))
			cJSON_AddBoolToObject(o, f->name, *(const bool *)p);
		break;
	case EVF_ENUM: {
		int v;

		memcpy(&v, p, sizeof(v));
		cJSON_AddStringToObject(o, f->name, name_of(f->names, f->n_names, v));
		break;
	}
	case EVF_LIST:
		add_list(o, f->name, *(const char *const *)p);
		break;
	case EVF_OBJ: {
		cJSON *sub;

		if (!*(const bool *)p) {
			cJSON_AddNullToObject(o, f->name);
			break;
		}
		sub = cJSON_AddObjectToObject(o, f->name);
		for (size_t i = 0; sub && i < f->n_sub; i++)
			add_field(sub, &f->sub[i], p);
		break;
	}
	}
}

cJSON *ev_encode(const struct event *e)
{
	const struct ev_schema *s = ev_schema(e->type);
	char ts[40];
	cJSON *o;

	if (!s || !(o = cJSON_CreateObject()))
		return NULL;
	ev_format_ts(ts, sizeof(ts), ev_mono_to_real_ns(e->ts_ns));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", s->name);
	/* Every member of the union starts at its beginning. */
	for (size_t i = 0; i < s->n_fields; i++)
		add_field(o, &s->fields[i], &e->agent_start);
	return o;
}

int ev_emit(struct evlog *lg, const struct event *e)
{
	if ((unsigned)e->type < EV_NTYPES)
		counts[e->type]++;
	return evlog_emit(lg, ev_encode(e));
}

uint64_t ev_count(enum ev_type t)
{
	return (unsigned)t < EV_NTYPES ? counts[t] : 0;
}
