/* SPDX-License-Identifier: MIT */
/* The configuration file: the whole schema of DESIGN.md, loaded and validated in one place.
 * Every error names the file and either line:column (malformed JSON) or the key path. */
#ifndef REVENANT_CONFIG_H
#define REVENANT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CONFIG_DEFAULT_PATH "/etc/revenant/revenant.json"
#define CONFIG_FALLBACK_PATH "config/revenant.json"
#define CONFIG_DEFAULT_CONTROL_SOCKET "/run/revenant/control.sock"
#define CONFIG_ENV_FILE_MAX (1 << 20) /* an env_file larger than this is refused */

/* What belongs to a service when its main process exits or it is stopped (systemd's KillMode). */
enum kill_mode {
	KILL_GROUP = 0, /* everything it started: its process group, cgroup or process tree */
	KILL_MAIN,	/* the main process only; what it started may stay */
};

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
	int max_restarts;     /* default 3, -1 (never give up)..1000 */
	bool critical;	      /* default false */
	char **depends_on;    /* names of other services (validated to exist, not self) */
	int n_deps;
	struct health_config health;
	int stop_signal;      /* signal number; "SIGTERM", "TERM" or a number; default SIGTERM */
	int stop_timeout_ms;  /* default 5000, 0..3600000 */
	enum zombie_policy zombie_policy; /* "report" | "nudge" (default) | "restart_parent" */
	char *log_file;	      /* "log_file": stdout/stderr of the service; default <log dir>/NAME.log */
	enum kill_mode kill_mode; /* "group" (default) | "main" */
	/* Who it runs as: NULL user = the agent's (root); uid/gid/home resolved at load. */
	char *user, *group; /* group NULL: the user's primary group */
	uid_t uid;
	gid_t gid;
	char *home;
	int umask;		  /* -1: inherit the agent's */
	bool no_new_privileges;	  /* PR_SET_NO_NEW_PRIVS before exec */
	int restart_delay_ms;	  /* back-off's first step (the second restart in a row), 250 */
	int restart_delay_max_ms; /* back-off's cap, 30000 */
	char **part_of;		  /* restarted after any of these restarts (implies depends_on) */
	int n_part_of;
	char *fingerprint; /* its settings as loaded: equal fingerprints, unchanged (reload) */
	char *stderr_file;	  /* "stderr_file": its stderr; default log_file (the same file) */
	long long log_max_bytes;  /* rotate the output files past this; default 10485760, 0 never */
	int log_keep;		  /* rotated output segments kept, default 5, 0..1000 */
	bool log_timestamps;	  /* lines stored as "TS stdout|stderr F|P LINE"; default true */
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
/* The same for the agent's loop (SIGHUP): opened O_NONBLOCK, and only a regular file is read,
 * so a config replaced by a FIFO cannot block the agent. */
int config_reload(const char *path, struct rev_config *cfg, char *err, size_t errlen);

/* What the agent checks when it loads a config (start and reload), beyond the schema: log.path
 * and each service's log_file and env_file, where they exist, are regular files (a FIFO would
 * block the agent, /dev/zero never end), an env_file at most CONFIG_ENV_FILE_MAX bytes. Missing
 * files are fine here. 0, or -EINVAL with "PATH: KEY: ..." in err. */
int config_check_files(const struct rev_config *cfg, char *err, size_t errlen);

/* control.socket of a file that may not be valid (as resolved by config_parse, or the default
 * when the file is JSON without one); NULL when it is not even JSON. For `revenant reload`,
 * which must reach the agent to have a bad file reported there. Free the result. */
char *config_control_socket(const char *path);

/* The file `revenant CMD` uses without -c: CONFIG_DEFAULT_PATH when it exists, else the fallback. */
const char *config_default_path(void);

const struct service_config *config_service(const struct rev_config *cfg, const char *name);

/* Does sv's command or env name another service's port ({port:NAME}, REVENANT_PORT_<NAME>)? */
bool config_uses_port_of(const struct service_config *sv, const char *name);
/* REVENANT_PORT_<NAME>: upper case, every other character than a letter or digit as '_'. */
void config_port_var(const char *name, char *buf, size_t len);

/* Index order in which services start: dependencies first. -ELOOP when depends_on has a cycle
 * (config_parse already rejects those). order must hold n_services ints. */
int config_start_order(const struct rev_config *cfg, int *order);

void config_free(struct rev_config *cfg);

#endif
