/* SPDX-License-Identifier: MIT */
/* The configuration file: the whole schema of DESIGN.md, loaded and validated in one place.
 * Every error names the file and either line:column (malformed JSON) or the key path. */
#ifndef REVENANT_CONFIG_H
#define REVENANT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_DEFAULT_PATH "/etc/revenant/revenant.json"
#define CONFIG_FALLBACK_PATH "config/revenant.json"
#define CONFIG_DEFAULT_CONTROL_SOCKET "/run/revenant/control.sock"

enum zombie_policy {
	ZOMBIE_REPORT = 0,
	ZOMBIE_NUDGE,
	ZOMBIE_RESTART_PARENT,
};

struct health_config {
	bool enabled;	 /* a "health" object was given */
	char *http;	 /* GET path, e.g. "/health"; NULL when not an HTTP check */
	bool tcp;	 /* connect() check */
	int interval_ms; /* default 5000, 100..3600000 */
	int timeout_ms;	 /* default 1000, 10..600000 */
	int failures;	 /* consecutive failures before unhealthy, default 3, 1..100 */
	int grace_ms;	 /* time after start before failures count, default 0, 0..3600000 */
};

struct service_config {
	char *name;
	char *command;	/* required, non-empty; run with /bin/sh -c */
	char *cwd;	/* absolute (resolved against the config file's directory); default that dir */
	char **env;	/* "KEY=VALUE" strings from "env", n_env of them */
	int n_env;
	char *env_file; /* absolute path or NULL */
	int port;	/* 0 = none; else 1..65535 */
	int *alt_ports; /* "alternative_ports", each 1..65535 */
	int n_alt;
	bool auto_restart;    /* default true */
	int max_restarts;     /* default 3, 0..1000 */
	bool critical;	      /* default false */
	char **depends_on;    /* names of other services (validated to exist, not self) */
	int n_deps;
	struct health_config health;
	int stop_signal;      /* signal number; "SIGTERM", "TERM" or a number; default SIGTERM */
	int stop_timeout_ms;  /* default 5000, 0..3600000 */
	enum zombie_policy zombie_policy; /* "report" | "nudge" (default) | "restart_parent" */
	char *log_file;	      /* "log_file": stdout/stderr of the service; default <log dir>/NAME.log */
};

struct rev_config {
	char *path; /* the file, as given */
	char *dir;  /* absolute directory of the file: relative paths resolve against it */
	struct service_config *services;
	int n_services;
	struct {
		bool enabled;		     /* default true */
		int zombie_grace_ms;	     /* default 1000, 0..3600000 */
		bool auto_resolve_conflicts; /* default true */
	} monitoring;
	struct {
		char *strategy; /* "intelligent" (default) | "migrate" | "fail" */
		bool allow_port_migration;	  /* default true */
		bool preserve_external_processes; /* default true */
	} conflict;
	struct {
		char *path;	    /* absolute; default <dir>/logs/events.jsonl */
		long long max_bytes; /* default 10485760, 4096..2^40 */
		int keep;	    /* default 5, 0..1000 */
		bool compress;	    /* default true */
	} log;
	struct {
		char *socket; /* default /run/revenant/control.sock; relative resolves against dir */
	} control;
	struct {
		char *listen; /* "host:port" or NULL (default "127.0.0.1:9464"); "" disables */
		bool control; /* status page start/stop/restart (POST with the token); default false */
		char *token_file; /* absolute, or NULL: <control socket dir>/metrics.token */
	} metrics;
};

/* Parse and validate `text` (the content of `path`). On error returns -EINVAL and writes one
 * message "PATH:LINE:COL: ..." or "PATH: KEY.PATH: ..." into err. cfg is zeroed first and is safe
 * to config_free() whatever the result. */
int config_parse(const char *text, const char *path, struct rev_config *cfg, char *err,
		 size_t errlen);

/* Read the file then config_parse(); -ENOENT etc. with a message when it cannot be read. */
int config_load(const char *path, struct rev_config *cfg, char *err, size_t errlen);

/* The file `revenant CMD` uses without -c: CONFIG_DEFAULT_PATH when it exists, else the fallback. */
const char *config_default_path(void);

const struct service_config *config_service(const struct rev_config *cfg, const char *name);

/* Index order in which services start: dependencies first. -ELOOP when depends_on has a cycle
 * (config_parse already rejects those). order must hold n_services ints. */
int config_start_order(const struct rev_config *cfg, int *order);

void config_free(struct rev_config *cfg);

#endif
