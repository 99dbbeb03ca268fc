// SPDX-License-Identifier: MIT
/* status/start/stop/restart talk to the agent over the control socket. verify, cleanup and
 * kill-port read the kernel (scan rows, zombie snapshot) and the runtime state file, so they work
 * whether or not an agent runs; every signal they send goes through a pidfd. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cmd/cli.h"
#include "agent/control.h"
#include "cmd/ctl.h"
#include "cmd/scan.h"
#include "lib/snapshot.h"
#include "lib/state.h"
#include "lib/util.h"

#define CALL_TIMEOUT_MS 120000

struct ctl_opts {
	const char *config;
	bool json, all, force;
	int sig;
	int argc;
	char **argv;
};

/* -c, --json, -h for every command; extra flags per command. Returns -1 to go on, else exit. */
static int parse(int argc, char **argv, struct ctl_opts *o, const char *usage, bool extra)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"all", no_argument, NULL, 'a'},	  {"force", no_argument, NULL, 'f'},
		{"signal", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->sig = SIGTERM;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:jafs:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'a':
		case 'f':
		case 's':
			if (!extra)
				goto bad;
			if (c == 'a')
				o->all = true;
			else if (c == 'f')
				o->force = true;
			else if ((o->sig = signal_from_name(optarg)) < 0) {
				cli_err("unknown signal '%s' (e.g. TERM, SIGKILL, 9)", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return EXIT_OK;
		default:
			goto bad;
		}
	}
	o->argc = argc - optind;
	o->argv = argv + optind;
	return -1;
bad:
	fputs(usage, stderr);
	return EXIT_USAGE;
}

/* -c FILE, else the running agent's (need_file: its config parsed too), else the default. */
static int load(const struct ctl_opts *o, struct rev_config *cfg, bool need_file, bool *from_agent)
{
	return cli_load_target(o->config, cfg, need_file, from_agent);
}

static int call_agent(const struct rev_config *cfg, cJSON *req, cJSON **resp)
{
	int rc = control_call(cfg->control.socket, req, CALL_TIMEOUT_MS, resp);

	cJSON_Delete(req);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		cli_err("no agent is running for control socket %s (start one with 'revenant run -c "
			"%s')",
			cfg->control.socket, cfg->path);
		return EXIT_NO_AGENT;
	}
	if (rc == -EACCES || rc == -EPERM) {
		cli_err("not permitted to use %s: the control socket is root's (run with sudo)",
			cfg->control.socket);
		return EXIT_NOT_PERMITTED;
	}
	if (rc) {
		cli_err("control socket %s: %s", cfg->control.socket, strerror(-rc));
		return EXIT_FAILED;
	}
	{
		const cJSON *ok = cJSON_GetObjectItemCaseSensitive(*resp, "ok");
		const cJSON *err = cJSON_GetObjectItemCaseSensitive(*resp, "error");

		if (!cJSON_IsTrue(ok)) {
			if (cJSON_IsString(err) && strstr(err->valuestring, "not permitted")) {
				cli_err("%s", err->valuestring);
				return EXIT_NOT_PERMITTED;
			}
			cli_err("%s", cJSON_IsString(err) ? err->valuestring : "the agent refused");
			return EXIT_FAILED;
		}
	}
	return EXIT_OK;
}

static void print_json(const cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);

	if (s)
		printf("%s\n", s);
	free(s);
}

static const char *jstr(const cJSON *o, const char *k, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* "code 1", "SIGKILL by bash[4242]", "SIGTERM by the agent", "SIGKILL by the kernel (OOM)". */
static void last_exit_text(const cJSON *e, char *buf, size_t len)
{
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
	const cJSON *by = cJSON_GetObjectItemCaseSensitive(e, "killed_by");
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(by, "pid");
	const char *sig = jstr(e, "signal", "?");
	bool oom = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "oom"));
	bool core = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "core_dumped"));
	char who[64];

	if (!cJSON_IsObject(e)) {
		snprintf(buf, len, "-");
		return;
	}
	if (cJSON_IsNumber(code)) {
		snprintf(buf, len, "code %d", (int)code->valuedouble);
		return;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(by, "agent")))
		snprintf(who, sizeof(who), " by the agent");
	else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(by, "kernel")))
		snprintf(who, sizeof(who), " by the kernel");
	else if (cJSON_IsObject(by) && cJSON_IsNumber(pid))
		snprintf(who, sizeof(who), " by %.16s[%d]", jstr(by, "comm", "?"),
			 (int)pid->valuedouble);
	else
		who[0] = 0;
	snprintf(buf, len, "%s%s%s%s", sig, who, oom ? " (OOM)" : "", core ? " (core)" : "");
}

static void print_status_table(const cJSON *resp)
{
	const cJSON *svcs = cJSON_GetObjectItemCaseSensitive(resp, "services"), *it;
	char last[128];

	printf("%-16s %-9s %-8s %-6s %-8s %-8s %s\n", "SERVICE", "STATE", "PID", "PORT", "RESTARTS",
	       "HEALTH", "USER     LAST EXIT");
	cJSON_ArrayForEach(it, svcs)
	{
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(it, "pid");
		const cJSON *port = cJSON_GetObjectItemCaseSensitive(it, "port");
		const cJSON *rs = cJSON_GetObjectItemCaseSensitive(it, "restarts");
		char p[16] = "-", q[16] = "-";

		if (cJSON_IsNumber(pid))
			snprintf(p, sizeof(p), "%d", (int)pid->valuedouble);
		if (cJSON_IsNumber(port))
			snprintf(q, sizeof(q), "%d", (int)port->valuedouble);
		last_exit_text(cJSON_GetObjectItemCaseSensitive(it, "last_exit"), last, sizeof(last));
		printf("%-16s %-9s %-8s %-6s %-8d %-8s %-8s ", it->string, jstr(it, "state", "?"), p,
		       q, cJSON_IsNumber(rs) ? (int)rs->valuedouble : 0, jstr(it, "health", "?"),
		       jstr(it, "user", "root"));
		/* comm comes from a process: nothing of it may drive the terminal */
		cli_put_clean(stdout, last, strlen(last), false);
		putchar('\n');
	}
}

/* The agent's status, for a command taking `nargs` arguments: -1 to go on (o, cfg, resp set),
 * else the exit code. */
static int get_status(int argc, char **argv, const char *usage, int nargs, struct ctl_opts *o,
		      struct rev_config *cfg, cJSON **resp)
{
	cJSON *req;
	int rc = parse(argc, argv, o, usage, false);

	if (rc >= 0)
		return rc;
	if (o->argc != nargs) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if ((rc = load(o, cfg, false, NULL)))
		return rc;
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "status");
	if ((rc = call_agent(cfg, req, resp))) {
		cJSON_Delete(*resp);
		config_free(cfg);
		return rc;
	}
	return -1;
}

/* The event log's health, when it is not perfect: write failures are never silent. */
static void print_log_status(const cJSON *resp)
{
	const cJSON *lg = cJSON_GetObjectItemCaseSensitive(resp, "log");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(lg, "write_errors");
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(lg, "lines_lost");
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(lg, "lines_queued");

	if (!cJSON_IsNumber(e) || (!e->valuedouble && !cJSON_IsNumber(q)))
		return;
	if (e->valuedouble || (cJSON_IsNumber(q) && q->valuedouble))
		printf("\nevent log %s: %.0f failed writes, %.0f lines lost, %.0f waiting\n",
		       jstr(lg, "path", "?"), e->valuedouble,
		       cJSON_IsNumber(l) ? l->valuedouble : 0, cJSON_IsNumber(q) ? q->valuedouble : 0);
}

int cmd_status(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant status [-c FILE] [--json]\n\n"
		"Services of the running agent: state, pid, port, restarts, health, user, and\n"
		"how each last exited (code, or signal and who sent it: killed_by, OOM).\n"
		"Exit 3 when no agent runs for the config's control.socket.\n";
	struct ctl_opts o;
	struct rev_config cfg;
	cJSON *resp = NULL;
	int rc = get_status(argc, argv, usage, 0, &o, &cfg, &resp);

	if (rc >= 0)
		return rc;
	rc = EXIT_OK;
	{
		if (o.json) {
			cJSON *out = cJSON_CreateObject();

			cJSON_AddItemReferenceToObject(
				out, "services", cJSON_GetObjectItemCaseSensitive(resp, "services"));
			if (cJSON_GetObjectItemCaseSensitive(resp, "log"))
				cJSON_AddItemReferenceToObject(
					out, "log", cJSON_GetObjectItemCaseSensitive(resp, "log"));
			print_json(out);
			cJSON_Delete(out);
		} else {
			print_status_table(resp);
			print_log_status(resp);
		}
	}
	cJSON_Delete(resp);
	config_free(&cfg);
	return rc;
}

static int service_cmd(int argc, char **argv, const char *cmd)
{
	char usage[512];
	struct ctl_opts o;
	struct rev_config cfg;
	cJSON *req, *resp = NULL;
	bool is_stop = !strcmp(cmd, "stop"), from_agent;
	int rc;

	snprintf(usage, sizeof(usage),
		 "usage: revenant %s [-c FILE] [--json] SERVICE%s\n\n"
		 "%s a service through the running agent; returns when it is done.%s\n",
		 cmd, is_stop ? "\n       revenant stop --all [--force]" : "",
		 !strcmp(cmd, "start") ? "Start" : is_stop ? "Stop" : "Restart",
		 is_stop ? "\n--all stops every service in reverse dependency order (the agent keeps\n"
			   "running); --force does not wait for stop_timeout_ms before SIGKILL."
			 : "");
	rc = parse(argc, argv, &o, usage, is_stop);
	if (rc >= 0)
		return rc;
	if ((o.all || o.force) && !is_stop)
		return EXIT_USAGE;
	if (o.all ? o.argc != 0 : o.argc != 1) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if ((rc = load(&o, &cfg, false, &from_agent)))
		return rc;
	/* The running agent knows its services: it answers for a name it does not have. */
	if (!o.all && !from_agent && !config_service(&cfg, o.argv[0])) {
		cli_err("%s: no service named '%s' in %s", cmd, o.argv[0], cfg.path);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", o.all ? "stop_all" : cmd);
	if (o.all)
		cJSON_AddBoolToObject(req, "force", o.force);
	else
		cJSON_AddStringToObject(req, "service", o.argv[0]);
	rc = call_agent(&cfg, req, &resp);
	if (!rc) {
		if (o.json)
			print_json(resp);
		else if (o.all)
			print_status_table(resp);
		else if (cJSON_GetObjectItemCaseSensitive(resp, "services"))
			printf("%s: already %s\n", o.argv[0], is_stop ? "stopped" : "running");
		else
			printf("%s: %s%s\n", o.argv[0], jstr(resp, "state", "?"), "");
	}
	cJSON_Delete(resp);
	config_free(&cfg);
	return rc;
}

int cmd_start(int argc, char **argv)
{
	return service_cmd(argc, argv, "start");
}

int cmd_stop(int argc, char **argv)
{
	return service_cmd(argc, argv, "stop");
}

int cmd_restart(int argc, char **argv)
{
	return service_cmd(argc, argv, "restart");
}

int cmd_reload(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant reload [-c FILE] [--json]\n\n"
		"Apply the agent's config file again (as SIGHUP does): added services start, removed\n"
		"ones stop, changed ones restart in dependency order, unchanged ones keep running.\n"
		"A bad file changes nothing: exit 2 and why. Log, control and metrics settings are\n"
		"applied at the agent's next start (the answer says which changed).\n";
	struct ctl_opts o;
	struct rev_config cfg;
	cJSON *req, *resp = NULL;
	int rc = parse(argc, argv, &o, usage, false);

	if (rc >= 0)
		return rc;
	if (o.argc) {
		cli_err("reload: unexpected argument '%s'", o.argv[0]);
		return EXIT_USAGE;
	}
	if (!o.config && cli_find_agent(&cfg)) {
		/* The running agent (its record): it re-reads its own file. */
	} else if ((rc = cli_load_config(o.config, &cfg))) {
		/* A bad file still goes to the agent, which keeps its configuration and logs why
		 * (agent_reload ok:false) — when the file says where the agent is. */
		char *sock = config_control_socket(o.config ? o.config : config_default_path());

		config_free(&cfg);
		if (!sock)
			return rc;
		memset(&cfg, 0, sizeof(cfg));
		cfg.control.socket = sock;
		cfg.path = strdup(o.config ? o.config : config_default_path());
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "reload");
	rc = call_agent(&cfg, req, &resp);
	if (resp && o.json)
		print_json(resp);
	else if (!rc)
		printf("%s\n", jstr(resp, "detail", "reloaded"));
	if (rc == EXIT_FAILED && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "config_error")))
		rc = EXIT_USAGE;
	cJSON_Delete(resp);
	config_free(&cfg);
	return rc;
}

int cmd_port(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant port [-c FILE] [--json] SERVICE\n\n"
		"Print the port SERVICE runs on now (an alternative after a migration), for scripts:\n"
		"  curl http://127.0.0.1:$(revenant port backend)/health\n"
		"Exit 1 when the service has no port, 2 when the agent has no such service.\n";
	struct ctl_opts o;
	struct rev_config cfg;
	cJSON *resp = NULL;
	const cJSON *svc, *port;
	int rc = get_status(argc, argv, usage, 1, &o, &cfg, &resp);

	if (rc >= 0)
		return rc;
	rc = EXIT_OK;
	{
		svc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp,
											 "services"),
						       o.argv[0]);
		port = cJSON_GetObjectItemCaseSensitive(svc, "port");
		if (!svc) {
			cli_err("port: the agent runs no service named '%s'", o.argv[0]);
			rc = EXIT_USAGE;
		} else if (o.json) {
			printf("{\"service\":\"%s\",\"port\":", svc->string);
			cJSON_IsNumber(port) ? printf("%d}\n", (int)port->valuedouble)
					     : printf("null}\n");
			rc = cJSON_IsNumber(port) ? EXIT_OK : EXIT_FAILED;
		} else if (cJSON_IsNumber(port)) {
			printf("%d\n", (int)port->valuedouble);
		} else {
			cli_err("port: %s has no port", o.argv[0]);
			rc = EXIT_FAILED;
		}
	}
	cJSON_Delete(resp);
	config_free(&cfg);
	return rc;
}

/* A managed process from the state file that still is the process it was (pid + start time). */
static bool still_ours(const struct svc_record *r)
{
	return state_record_live(r) && proc_state(r->pid) != 'Z';
}

static void reason(cJSON *why, bool json, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reason(cJSON *why, bool json, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cJSON_AddItemToArray(why, cJSON_CreateString(buf));
	if (!json)
		printf("%s\n", buf);
}

int cmd_verify(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant verify [-c FILE] [--json]\n\n"
		"Exit 0 when no managed process is alive and every configured port is free;\n"
		"else exit 1 and say why (each process and port, with its owner).\n";
	struct ctl_opts o;
	struct rev_config cfg;
	struct rt_state st = {0};
	struct scan_rows rows = {0};
	char path[REV_PATH_BUF];
	cJSON *why;
	int rc = parse(argc, argv, &o, usage, false);

	if (rc >= 0)
		return rc;
	if ((rc = load(&o, &cfg, true, NULL)))
		return rc;
	why = cJSON_CreateArray();
	state_runtime_path(cfg.control.socket, REV_STATE_FILE, path, sizeof(path));
	if (state_read(path, &st) == 0)
		for (size_t i = 0; i < st.n; i++)
			if (still_ours(&st.svcs[i]))
				reason(why, o.json, "service %s: pid %d is alive", st.svcs[i].name,
				       st.svcs[i].pid);
	if (scan_collect(cfg.control.socket, false, 0, &rows) == 0) {
		for (int i = 0; i < cfg.n_services; i++) {
			const struct service_config *c = &cfg.services[i];

			for (size_t k = 0; c->port && k < rows.n; k++) {
				const struct scan_row *r = &rows.rows[k];

				if (r->port != c->port || r->proto != REV_PROTO_TCP)
					continue;
				if (r->pid)
					reason(why, o.json, "port %d (service %s) is held by pid %d (%s)",
					       c->port, c->name, r->pid, r->comm);
				else
					reason(why, o.json,
					       "port %d (service %s) is held by a process revenant "
					       "cannot see",
					       c->port, c->name);
				break;
			}
		}
	}
	rc = cJSON_GetArraySize(why) ? EXIT_FAILED : EXIT_OK;
	if (o.json) {
		cJSON *out = cJSON_CreateObject();

		cJSON_AddBoolToObject(out, "ok", rc == EXIT_OK);
		cJSON_AddItemToObject(out, "reasons", why);
		print_json(out);
		cJSON_Delete(out);
	} else {
		if (!rc)
			printf("ok: no managed process alive, every configured port free\n");
		cJSON_Delete(why);
	}
	scan_rows_free(&rows);
	state_free(&st);
	config_free(&cfg);
	return rc;
}

/* Signal through a pidfd and wait (on the pidfd) up to ms for the exit. 1 gone, 0 still alive,
 * -1 (errno set) when it cannot be signalled. */
static int signal_and_wait(int fd, int sig, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (pidfd_signal(fd, sig))
		return errno == ESRCH ? 1 : -1;
	/* the pidfd is readable once the process exited (a zombie counts: it holds nothing) */
	return poll(&p, 1, ms) > 0 ? 1 : 0;
}

/* A pidfd on the recorded process, opened before its identity is checked: the start time read
 * after the open, and the process still alive after the read, make it the recorded one. -1 when
 * it is not (gone, or its pid now belongs to another process). */
static int open_recorded(const struct svc_record *r)
{
	int fd = r->pid > 1 ? pidfd_open_pid(r->pid) : -1;

	if (fd < 0)
		return -1;
	if (!still_ours(r) || pidfd_signal(fd, 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

int cmd_cleanup(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant cleanup [-c FILE] [--json]\n\n"
		"Nudge (SIGCHLD) the parents of zombies that belong to managed services, or restart\n"
		"the service when its zombie_policy is restart_parent; and when no agent runs, stop\n"
		"managed processes a dead agent left behind, freeing their ports. Never touches a\n"
		"process that is not managed.\n";
	struct ctl_opts o;
	struct rev_config cfg;
	struct rt_state st = {0};
	struct snap s = {0};
	char path[REV_PATH_BUF], err[256];
	cJSON *done;
	bool agent;
	int rc = parse(argc, argv, &o, usage, false);

	if (rc >= 0)
		return rc;
	if ((rc = load(&o, &cfg, true, NULL)))
		return rc;
	if (!is_root()) {
		config_free(&cfg);
		return cli_need_root("cleanup");
	}
	done = cJSON_CreateArray();
	agent = scan_agent_running(cfg.control.socket);
	state_runtime_path(cfg.control.socket, REV_STATE_FILE, path, sizeof(path));
	state_read(path, &st);
	if (snapshot_take(&s, SNAP_ZOMBIES, NULL, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < s.n_zombies; i++) {
			const struct snap_zombie *z = &s.zombies[i];
			int zfd = pidfd_open_pid(z->ppid);
			const char *svc = zfd >= 0 ? state_service_of(&st, z->ppid) : NULL;
			const struct service_config *c = svc ? config_service(&cfg, svc) : NULL;

			if (!c) {
				if (zfd >= 0)
					close(zfd);
				continue;
			}
			if (c->zombie_policy == ZOMBIE_RESTART_PARENT && agent) {
				cJSON *req = cJSON_CreateObject(), *resp = NULL;

				cJSON_AddStringToObject(req, "cmd", "restart");
				cJSON_AddStringToObject(req, "service", c->name);
				if (call_agent(&cfg, req, &resp) == 0)
					reason(done, o.json, "restarted %s: zombie %d (%s) of pid %d",
					       c->name, z->pid, z->comm, z->ppid);
				cJSON_Delete(resp);
			} else {
				/* The pidfd first: the parent was matched (pid and start time) after
				 * it was opened, and the nudge goes only if it is still alive. */
				if (zfd >= 0 && pidfd_signal(zfd, SIGCHLD) == 0)
					reason(done, o.json,
					       "nudged pid %d (%s, service %s) to reap zombie %d",
					       z->ppid, z->parent_comm, c->name, z->pid);
			}
			if (zfd >= 0)
				close(zfd);
		}
	}
	for (size_t i = 0; !agent && i < st.n; i++) {
		const struct svc_record *r = &st.svcs[i];
		const struct service_config *c = config_service(&cfg, r->name);
		int sig = c ? c->stop_signal : SIGTERM;
		int ms = c ? c->stop_timeout_ms : 5000;
		int gone, fd = open_recorded(r);

		if (fd < 0)
			continue;
		if (r->pgid == r->pid)
			pidfd_signal_group(fd, r->pgid, sig);
		gone = signal_and_wait(fd, sig, ms);
		if (gone != 1) {
			if (r->pgid == r->pid)
				pidfd_signal_group(fd, r->pgid, SIGKILL);
			gone = signal_and_wait(fd, SIGKILL, 5000);
		}
		close(fd);
		reason(done, o.json, "%s leftover %s (pid %d, port %d)",
		       gone == 1 ? "stopped" : "could not stop", r->name, r->pid, r->port);
	}
	if (!agent && st.n)
		unlink(path);
	if (o.json) {
		cJSON *out = cJSON_CreateObject();

		cJSON_AddItemToObject(out, "actions", done);
		print_json(out);
		cJSON_Delete(out);
	} else {
		if (!cJSON_GetArraySize(done))
			printf("nothing to clean up\n");
		cJSON_Delete(done);
	}
	snapshot_free(&s);
	state_free(&st);
	config_free(&cfg);
	return EXIT_OK;
}

/* Whether the process behind pidfd (pid) holds port: a scan made after the pidfd was opened
 * names it, and the pidfd's process is still alive after that scan. */
static bool holds_port(int pidfd, pid_t pid, long port, const char *control_socket)
{
	struct scan_rows rows = {0};
	bool found = false;

	if (scan_collect(control_socket, true, 0, &rows))
		return false;
	for (size_t i = 0; i < rows.n && !found; i++) {
		const struct scan_row *r = &rows.rows[i];

		if (r->port != port)
			continue;
		found = r->pid == pid;
		for (size_t k = 0; k < r->n_holders && !found; k++)
			found = r->holders[k] == pid;
	}
	scan_rows_free(&rows);
	return found && pidfd_signal(pidfd, 0) == 0;
}

int cmd_kill_port(int argc, char **argv)
{
	static const char usage[] =
		"usage: revenant kill-port [-c FILE] [--signal SIG] [--force] [--json] PORT\n\n"
		"Stop the process that owns PORT, through a pidfd. A managed service is stopped by\n"
		"the agent (so it is not restarted); any other process is refused unless --force.\n"
		"PID 1 is never signalled.\n";
	struct ctl_opts o;
	struct rev_config cfg;
	struct rt_state st = {0};
	struct scan_rows rows = {0};
	const struct scan_row *r = NULL;
	const char *svc;
	char path[REV_PATH_BUF], *end;
	long port;
	int pidfd = -1, rc = parse(argc, argv, &o, usage, true);

	if (rc >= 0)
		return rc;
	if (o.argc != 1 || o.all) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	port = strtol(o.argv[0], &end, 10);
	if (*end || port < 1 || port > 65535) {
		cli_err("kill-port: '%s' is not a port (1..65535)", o.argv[0]);
		return EXIT_USAGE;
	}
	if ((rc = load(&o, &cfg, true, NULL)))
		return rc;
	if (!is_root()) {
		config_free(&cfg);
		return cli_need_root("kill-port");
	}
	if (scan_collect(cfg.control.socket, true, 0, &rows)) {
		config_free(&cfg);
		return EXIT_FAILED;
	}
	for (size_t i = 0; i < rows.n && !r; i++)
		if (rows.rows[i].port == port && rows.rows[i].pid)
			r = &rows.rows[i];
	rc = EXIT_FAILED;
	if (!r) {
		cli_err("kill-port: no process that revenant can see holds port %ld", port);
		goto out;
	}
	if (r->pid == 1) {
		cli_err("kill-port: port %ld belongs to PID 1 (%s): refusing, always", port, r->comm);
		goto out;
	}
	/* The pidfd first, then who it is: the start time (against the state file) and the port
	 * (a fresh scan) are read after it was opened, and the process is alive after both, so
	 * they describe the process this pidfd holds, not a later owner of its pid. */
	pidfd = pidfd_open_pid(r->pid);
	if (pidfd < 0) {
		cli_err("kill-port: pid %d, which held port %ld, is gone", r->pid, port);
		goto out;
	}
	state_runtime_path(cfg.control.socket, REV_STATE_FILE, path, sizeof(path));
	state_read(path, &st);
	svc = state_service_of(&st, r->pid);
	if (!holds_port(pidfd, r->pid, port, cfg.control.socket)) {
		cli_err("kill-port: pid %d no longer holds port %ld (it exited, or its pid now "
			"belongs to another process): nothing signalled",
			r->pid, port);
		goto out;
	}
	if (svc && scan_agent_running(cfg.control.socket)) {
		cJSON *req = cJSON_CreateObject(), *resp = NULL;

		cJSON_AddStringToObject(req, "cmd", "stop");
		cJSON_AddStringToObject(req, "service", svc);
		rc = call_agent(&cfg, req, &resp);
		if (!rc)
			printf("stopped service %s (pid %d), which held port %ld\n", svc, r->pid,
			       port);
		cJSON_Delete(resp);
		goto out;
	}
	if (!svc && !o.force) {
		cli_err("kill-port: port %ld is held by pid %d (%s), which revenant does not manage: "
			"refusing (add --force to stop it anyway)",
			port, r->pid, r->comm);
		goto out;
	}
	{
		char sbuf[16];
		int gone = signal_and_wait(pidfd, o.sig, 10000);

		if (gone < 0) {
			cli_err("kill-port: cannot signal pid %d: %s", r->pid, strerror(errno));
			goto out;
		}
		printf("sent %s to pid %d (%s)%s: %s\n", signal_name(o.sig, sbuf, sizeof(sbuf)),
		       r->pid, r->comm, svc ? ", a managed process" : "",
		       gone ? "it exited" : "it is still running after 10 s");
		rc = gone ? EXIT_OK : EXIT_FAILED;
	}
out:
	if (pidfd >= 0)
		close(pidfd);
	scan_rows_free(&rows);
	state_free(&st);
	config_free(&cfg);
	return rc;
}
