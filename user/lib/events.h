/* SPDX-License-Identifier: MIT */
/* The event schema: every type of the event log, its struct, and the one table that names its
 * JSON fields. The agent fills a struct and calls ev_emit(); `revenant tail` prints rows from the
 * same table; the names of actions and reasons that modules exchange as enums live here too. */
#ifndef REVENANT_EVENTS_H
#define REVENANT_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

struct evlog;

enum ev_type {
	EV_AGENT_START,
	EV_AGENT_STOP,
	EV_AGENT_RELOAD,
	EV_ZOMBIE,
	EV_ZOMBIE_REAPED,
	EV_PORT_COLLISION,
	EV_PORT_LISTEN,
	EV_PORT_RELEASE,
	EV_PORT_MIGRATED,
	EV_SERVICE_START,
	EV_SERVICE_EXIT,
	EV_SERVICE_RESTART,
	EV_SERVICE_GIVE_UP,
	EV_SERVICE_LEFTOVER,
	EV_SERVICE_WARNING,
	EV_HEALTH,
	EV_EVENTS_LOST,
	EV_NTYPES,
};

/* What the agent did about a zombie, a collision or a leftover. */
enum ev_action {
	ACT_REPORT,
	ACT_NUDGE,
	ACT_RESTART_PARENT,
	ACT_MIGRATE,
	ACT_REPLACE,
	ACT_N,
};

/* Why the supervisor restarts a service (service_restart.reason). */
enum restart_reason {
	RESTART_EXIT,	       /* the main process exited */
	RESTART_UNHEALTHY,     /* the health check failed */
	RESTART_ZOMBIE_POLICY, /* zombie_policy restart_parent */
	RESTART_REQUESTED,     /* `revenant restart` */
	RESTART_COLLISION,     /* its port was taken: moved to another one */
	RESTART_DEPENDENCY_MOVED,     /* a dependency whose port it uses moved to another port */
	RESTART_DEPENDENCY_RESTARTED, /* part_of a dependency that restarted */
	RESTART_RELOAD,		      /* its settings changed (revenant reload, SIGHUP) */
	RESTART_N,
};

enum stop_reason {
	STOP_SIGTERM,
	STOP_SIGINT,
	STOP_CRITICAL,
	STOP_ERROR,
	STOP_N,
};

enum ev_syscall {
	EVSYS_BIND,
	EVSYS_LISTEN,
	EVSYS_N,
};

/* The socket fields port events share. */
struct ev_sock {
	int64_t port;
	const char *proto; /* "tcp", "udp" */
	const char *addr;
	const char *family; /* "inet", "inet6" */
	int64_t netns;
};

struct ev_agent_start {
	const char *version, *config, *pin;
	int64_t pid;
	const char *mounted; /* comma-separated; written as an array */
};

struct ev_agent_stop {
	enum stop_reason reason;
};

struct ev_agent_reload {
	const char *config;
	bool ok;
	const char *detail;
};

struct ev_zombie {
	int64_t pid, ppid, age_ms;
	const char *comm, *parent_comm, *service;
	enum ev_action action;
	bool existing; /* predates the agent: the age is an estimate */
};

struct ev_zombie_reaped {
	int64_t pid, ppid, age_ms;
	const char *comm, *service;
};

struct ev_port_collision {
	struct ev_sock sock;
	int64_t pid, ppid;
	const char *comm, *service;
	int64_t owner_pid; /* 0: nobody can name it (null) */
	const char *owner_comm, *owner_service;
	enum ev_syscall syscall;
	enum ev_action action;
};

/* port_listen and port_release */
struct ev_port {
	struct ev_sock sock;
	int64_t pid;
	const char *comm, *service;
};

struct ev_port_migrated {
	const char *service;
	int64_t from, to;
	int64_t owner_pid; /* 0: null */
	const char *owner_comm;
};

struct ev_service_start {
	const char *service, *command;
	int64_t pid, port; /* port 0: null */
};

/* Who sent the signal a process died of (service_exit.killed_by), as the kernel saw it. */
struct ev_sender {
	bool known; /* false: null (it exited by itself, or nobody saw the sender) */
	int64_t pid; /* 0: null (a kernel signal sent in no process's context) */
	const char *comm;
	int64_t uid;
	bool agent;  /* the agent itself (a stop, a restart, an escalation) */
	bool kernel; /* the kernel (the OOM killer, a fault, a timer), not kill() */
};

struct ev_service_exit {
	const char *service;
	int64_t pid;
	int64_t code;	    /* < 0: null (killed by a signal) */
	const char *signal; /* NULL: null */
	int64_t uptime_ms;
	struct ev_sender killed_by;
	bool oom;	  /* the kernel's OOM killer chose it */
	bool core_dumped; /* it left a core dump */
};

struct ev_service_restart {
	const char *service;
	int64_t attempt, delay_ms;
	enum restart_reason reason;
	const char *dependency;	 /* the dependency behind it (NULL: left out) */
	int64_t dependency_port; /* its port now (0: left out) */
};

struct ev_service_give_up {
	const char *service;
	int64_t restarts;
	const char *reason;
	bool critical;
};

struct ev_service_leftover {
	const char *service;
	int64_t pid, port;
	enum ev_action action;
};

struct ev_service_warning {
	const char *service, *detail;
};

struct ev_health {
	const char *service;
	int64_t pid, port;
	bool ok;
	const char *detail;
};

struct ev_events_lost {
	int64_t count;
	const char *reason;
};

struct event {
	enum ev_type type;
	uint64_t ts_ns; /* CLOCK_MONOTONIC, as the kernel stamps its records; 0 = now */
	union {
		struct ev_agent_start agent_start;
		struct ev_agent_stop agent_stop;
		struct ev_agent_reload agent_reload;
		struct ev_zombie zombie;
		struct ev_zombie_reaped zombie_reaped;
		struct ev_port_collision port_collision;
		struct ev_port port; /* EV_PORT_LISTEN, EV_PORT_RELEASE */
		struct ev_port_migrated port_migrated;
		struct ev_service_start service_start;
		struct ev_service_exit service_exit;
		struct ev_service_restart service_restart;
		struct ev_service_give_up service_give_up;
		struct ev_service_leftover service_leftover;
		struct ev_service_warning service_warning;
		struct ev_health health;
		struct ev_events_lost events_lost;
	};
};

/* A field of an event type, as the encoder and `tail` see it. */
enum ev_field_kind {
	EVF_STR,  /* const char *; NULL is null */
	EVF_INT,  /* int64_t */
	EVF_BOOL, /* bool */
	EVF_ENUM, /* an enum (int), written by name */
	EVF_LIST, /* const char *, comma-separated, written as an array of strings */
	EVF_OBJ,  /* a struct whose first member is `bool known`, written as an object of its own
		   * fields (sub), or null when not known */
};
#define EVF_NULL0 0x1	/* an INT of 0 is null */
#define EVF_NULLNEG 0x2 /* a negative INT is null */
#define EVF_OMIT 0x4	/* 0, NULL or false: the field is left out */
#define EVF_QUIET 0x8	/* not shown in `tail`'s one-line rows */
#define EVF_QUIET_FALSE 0x10 /* a BOOL shown in `tail`'s rows only when true */

struct ev_field {
	const char *name;
	uint8_t kind;
	uint8_t flags;
	uint16_t off;		   /* offset in the type's struct */
	const char *const *names; /* EVF_ENUM: the name of each value */
	size_t n_names;
	const struct ev_field *sub; /* EVF_OBJ: its fields, offsets within the member */
	size_t n_sub;
};

struct ev_schema {
	const char *name;
	const struct ev_field *fields;
	size_t n_fields;
};

const struct ev_schema *ev_schema(enum ev_type t);
/* The type named `name`, or -1. */
int ev_type_of(const char *name);
const char *ev_type_name(enum ev_type t);
const char *ev_action_name(enum ev_action a);
const char *restart_reason_name(enum restart_reason r);
const char *stop_reason_name(enum stop_reason r);

/* The JSON object of e: {"ts", "type", fields in schema order}. NULL when out of memory. */
cJSON *ev_encode(const struct event *e);
/* Encode and append to the log (lg may be NULL: counted only). 0 or -errno. */
int ev_emit(struct evlog *lg, const struct event *e);

/* Events emitted since start, by type (the metrics exposition reads these). */
uint64_t ev_count(enum ev_type t);

#endif
