// SPDX-License-Identifier: MIT
/* Spawning and signalling the services' processes: environment (env_file, env, PORT), output
 * pipes (or the log file), a process group and a cgroup per service, the exit-cause watch; every
 * signal through a pidfd or the group the main process leads. The cgroup root of this agent is
 * <hierarchy>/revenant-PID. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "agent/cause.h"
#include "agent/output.h"
#include "agent/proc.h"
#include "lib/loop.h"
#include "lib/safefs.h"
#include "lib/state.h"
#include "lib/util.h"

extern char **environ;

struct procs {
	char cgroup_root[256];
	char **made; /* the cgroup directories this agent made (only those are ever used) */
	size_t n_made;
	int tree_fd;
	uint32_t *tree_used;
	int causes_fd;		/* bpf/cause's watched pids, -1: none */
	struct outputs *output; /* reads the services' pipes; NULL: the log file is their output */
};

/* The port a reference at s names ("{port}" or "{port:NAME}"), and its length; -1 when s holds
 * none there. */
static int port_ref(const char *s, int port, const struct svc_port *peers, size_t n, size_t *len)
{
	const char *end;

	if (!strncmp(s, "{port}", 6)) {
		*len = 6;
		return port;
	}
	if (strncmp(s, "{port:", 6) || !(end = strchr(s + 6, '}')))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strlen(peers[i].name) == (size_t)(end - s - 6) &&
		    !strncmp(peers[i].name, s + 6, end - s - 6)) {
			*len = end - s + 1;
			return peers[i].port;
		}
	return -1;
}

char *procs_expand(const char *s, int port, const struct svc_port *peers, size_t n_peers)
{
	size_t cap = strlen(s) + 1, len;
	char *out, *w;

	/* a port takes at most 5 digits, never more than its reference's 6 characters */
	out = malloc(cap);
	if (!out)
		return NULL;
	w = out;
	while (*s) {
		int v = *s == '{' ? port_ref(s, port, peers, n_peers, &len) : -1;

		if (v >= 0) {
			w += sprintf(w, "%d", v);
			s += len;
		} else {
			*w++ = *s++;
		}
	}
	*w = 0;
	return out;
}

struct envv {
	char **v;
	size_t n, cap;
	bool oom;
};

static void env_set(struct envv *e, const char *kv)
{
	size_t klen = strcspn(kv, "=");
	char *dup = strdup(kv);

	if (!dup) {
		e->oom = true;
		return;
	}
	for (size_t i = 0; i < e->n; i++) {
		if (!strncmp(e->v[i], kv, klen) && e->v[i][klen] == '=') {
			free(e->v[i]);
			e->v[i] = dup;
			return;
		}
	}
	if (e->n + 2 > e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 64;
		char **nv = realloc(e->v, ncap * sizeof(char *));

		if (!nv) {
			free(dup);
			e->oom = true;
			return;
		}
		e->v = nv;
		e->cap = ncap;
	}
	e->v[e->n++] = dup;
	e->v[e->n] = NULL;
}

static void env_free(struct envv *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
}

/* KEY=VALUE lines; '#' comments, blank lines, "export " and surrounding quotes allowed. Only a
 * regular file of at most CONFIG_ENV_FILE_MAX bytes is read (a FIFO would block the loop,
 * /dev/zero never end). */
static int env_file_load(struct envv *e, const char *path, char *err, size_t errlen)
{
	int fd = safe_open_read(path, CONFIG_ENV_FILE_MAX, false, err, errlen);
	FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
	char line[4096];
	size_t total = 0;

	if (!f) {
		if (fd >= 0)
			close(fd);
		else
			return fd;
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* The size was checked at the open; a file growing meanwhile is read up to the cap. */
	while (total <= CONFIG_ENV_FILE_MAX && fgets(line, sizeof(line), f)) {
		char *p = line, *eq, *val, *end;

		total += strlen(line);
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		if (!strncmp(p, "export ", 7))
			p += 7;
		eq = strchr(p, '=');
		if (!eq)
			continue;
		end = p + strlen(p);
		while (end > eq + 1 && isspace((unsigned char)end[-1]))
			*--end = 0;
		val = eq + 1;
		if ((*val == '"' || *val == '\'') && end > val + 1 && end[-1] == *val) {
			end[-1] = 0;
			memmove(val, val + 1, strlen(val + 1) + 1);
		}
		env_set(e, p);
	}
	fclose(f);
	return 0;
}

/* The service's environment: ours, REVENANT_PORT_<NAME> of every service with a port, its
 * env_file, its env (with {port:NAME} expanded), then PORT, REVENANT_SERVICE and, for a service
 * with a user, HOME, USER and LOGNAME. */
static int build_env(struct envv *env, const struct service_config *c, int port,
		     const struct svc_port *peers, size_t n_peers, char *warn, size_t warnlen)
{
	char kv[256], why[512];

	for (char **e = environ; *e; e++)
		env_set(env, *e);
	for (size_t i = 0; i < n_peers; i++) {
		size_t n;

		if (!peers[i].port)
			continue;
		config_port_var(peers[i].name, kv, sizeof(kv));
		n = strlen(kv);
		snprintf(kv + n, sizeof(kv) - n, "=%d", peers[i].port);
		env_set(env, kv);
	}
	if (c->env_file && env_file_load(env, c->env_file, why, sizeof(why)))
		snprintf(warn, warnlen, "cannot read env_file %s: %s; starting without it",
			 c->env_file, why);
	for (int i = 0; i < c->n_env; i++) {
		char *v = procs_expand(c->env[i], port, peers, n_peers);

		if (!v)
			return -ENOMEM;
		env_set(env, v);
		free(v);
	}
	if (port) {
		snprintf(kv, sizeof(kv), "PORT=%d", port);
		env_set(env, kv);
	}
	snprintf(kv, sizeof(kv), "REVENANT_SERVICE=%s", c->name);
	env_set(env, kv);
	if (c->user) {
		snprintf(kv, sizeof(kv), "HOME=%s", c->home ? c->home : "/");
		env_set(env, kv);
		snprintf(kv, sizeof(kv), "USER=%s", c->user);
		env_set(env, kv);
		snprintf(kv, sizeof(kv), "LOGNAME=%s", c->user);
		env_set(env, kv);
	}
	return env->oom ? -ENOMEM : 0;
}

/* What the child needs to become the service's user: looked up before fork (NSS is not safe
 * between fork and exec). */
struct creds {
	gid_t groups[256];
	int n_groups;
};

static int lookup_creds(const struct service_config *c, struct creds *cr)
{
	cr->n_groups = ARRAY_SIZE(cr->groups);
	if (!c->user)
		return 0;
	/* supplementary groups as initgroups(3) would set them; the explicit group first */
	if (getgrouplist(c->user, c->gid, cr->groups, &cr->n_groups) < 0)
		return -E2BIG;
	return 0;
}

/* setgroups, setgid, setuid — each checked: a half-dropped child must not run. */
static void drop_privileges(const struct service_config *c, const struct creds *cr)
{
	if (c->umask >= 0)
		umask((mode_t)c->umask);
	if (c->user && (setgroups(cr->n_groups, cr->groups) || setgid(c->gid) || setuid(c->uid) ||
			(c->uid != 0 && setuid(0) == 0))) {
		dprintf(2, "revenant: %s: cannot become user %s (uid %u, gid %u): %s\n", c->name,
			c->user, (unsigned)c->uid, (unsigned)c->gid, strerror(errno));
		_exit(126);
	}
	if (c->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		dprintf(2, "revenant: %s: cannot set no_new_privileges: %s\n", c->name,
			strerror(errno));
		_exit(126);
	}
}

static bool made_here(const struct procs *p, const char *path)
{
	for (size_t i = 0; i < p->n_made; i++)
		if (!strcmp(p->made[i], path))
			return true;
	return false;
}

/* The service's cgroup: <root>/NAME, a directory this agent made itself. One that existed before
 * its first mkdir is someone else's: its processes are not the service's, so it is never joined,
 * signalled or killed (said in warn). */
static void make_cgroup(struct procs *p, const struct service_config *c, struct svc_proc *sp,
			char *warn, size_t warnlen)
{
	char **made;

	sp->cgroup[0] = 0;
	if (!p || !p->cgroup_root[0] ||
	    path_child(sp->cgroup, sizeof(sp->cgroup), p->cgroup_root, c->name)) {
		sp->cgroup[0] = 0;
		return;
	}
	if (mkdir(sp->cgroup, 0755) == 0) {
		made = realloc(p->made, (p->n_made + 1) * sizeof(*made));
		if (made && (made[p->n_made] = strdup(sp->cgroup))) {
			p->made = made;
			p->n_made++;
			return;
		}
		if (made)
			p->made = made;
		rmdir(sp->cgroup);
	} else if (errno == EEXIST && made_here(p, sp->cgroup)) {
		return;
	} else if (errno == EEXIST) {
		snprintf(warn, warnlen,
			 "cgroup %s existed before the agent made it: not used (only the process "
			 "group is signalled)",
			 sp->cgroup);
	}
	sp->cgroup[0] = 0;
}

/* In the child, between fork and exec: only async-signal-safe calls, _exit on failure. out and
 * err become its stdout and stderr. */
static void exec_child(const struct procs *p, const struct service_config *c,
		       const struct svc_proc *sp, const struct creds *cr, char *cmd, char **envp,
		       int out, int err, int devnull)
{
	sigset_t none;
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};

	/* The child must not inherit the agent's blocked signals or ignored SIGPIPE. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, 0);
	nofile_restore(); /* the agent's raised fd limit is not the service's */
	if (!sp->cgroup[0] && p && p->tree_fd >= 0) {
		/* Into the tree before exec: nothing it forks can escape before it is in. */
		__u32 self = getpid(), tag = sp->tag;

		bpf_map_update_elem(p->tree_fd, &self, &tag, BPF_ANY);
	}
	/* Watched before exec: whoever signals it from now on is recorded. */
	if (p)
		cause_watch(p->causes_fd, getpid());
	if (sp->cgroup[0]) {
		char path[300];
		int fd;

		snprintf(path, sizeof(path), "%s/cgroup.procs", sp->cgroup);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "0", 1) < 0) {
				/* not fatal: the process group still reaches the service */
			}
			close(fd);
		}
	}
	if (devnull >= 0)
		dup2(devnull, 0);
	if (out >= 0)
		dup2(out, 1);
	if (err >= 0)
		dup2(err, 2);
	drop_privileges(c, cr);
	if (chdir(c->cwd)) {
		dprintf(2, "revenant: %s: cannot chdir to %s: %s\n", c->name, c->cwd,
			strerror(errno));
		_exit(126);
	}
	execve("/bin/sh", argv, envp);
	dprintf(2, "revenant: %s: cannot run /bin/sh: %s\n", c->name, strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static void append_warn(char *warn, size_t warnlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void append_warn(char *warn, size_t warnlen, const char *fmt, ...)
{
	size_t n = strlen(warn);
	va_list ap;

	if (n && n + 2 < warnlen) {
		strcpy(warn + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(warn + n, warnlen - n, fmt, ap);
	va_end(ap);
}

/* The service's stdout and stderr: pipes the agent reads (lines stamped and rotated by
 * agent/output), or, without them, its log file opened for appending (no rotation). */
static int open_output(struct procs *p, const struct service_config *c, struct out_pipes *op,
		       int *logfd, char *warn, size_t warnlen)
{
	char why[512] = "";
	int rc;

	*op = (struct out_pipes){.child = {-1, -1}, .ours = {-1, -1}};
	*logfd = -1;
	if (p && p->output) {
		rc = outputs_open(p->output, c, why, sizeof(why));
		if (!rc && !(rc = out_pipes_open(op)))
			return 0;
		append_warn(warn, warnlen, "%s%s; its output goes to %s as it is written (no time, "
			    "no rotation)", why[0] ? why : "cannot make its output pipes: ",
			    why[0] ? "" : strerror(-rc), c->log_file);
	}
	/* as safe_open() allows: no symlink, a regular file (or /dev/null), the agent's own in a
	 * shared directory; refused: the output is discarded, and the service is told why */
	why[0] = 0;
	*logfd = safe_open(c->log_file, O_WRONLY | O_APPEND, SFILE_CREATE | SFILE_DEVNULL,
			   SDIR_CREATE, 0644, why, sizeof(why));
	if (*logfd < 0)
		append_warn(warn, warnlen, "log_file refused: %s; the output goes to /dev/null", why);
	return 0;
}

int procs_spawn(struct procs *p, const struct service_config *c, int port,
		const struct svc_port *peers, size_t n_peers, struct svc_proc *out, char *warn,
		size_t warnlen)
{
	struct envv env = {0};
	struct out_pipes op;
	struct creds cr;
	char *cmd = procs_expand(c->command, port, peers, n_peers);
	int logfd, devnull, err;
	pid_t pid;

	warn[0] = 0;
	if (!cmd || build_env(&env, c, port, peers, n_peers, warn, warnlen)) {
		free(cmd);
		env_free(&env);
		return -ENOMEM;
	}
	if ((err = lookup_creds(c, &cr))) {
		snprintf(warn, warnlen, "user %s is in more than %zu groups", c->user,
			 ARRAY_SIZE(cr.groups));
		free(cmd);
		env_free(&env);
		return err;
	}
	open_output(p, c, &op, &logfd, warn, warnlen);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0)
		logfd = dup(devnull); /* no usable log file: the output is discarded */
	make_cgroup(p, c, out, warn + strlen(warn), warnlen - strlen(warn));
	/* The child puts itself in the tree: the fork probe follows it from before its exec. */
	if (!out->cgroup[0] && p->tree_fd >= 0 && p->tree_used)
		__atomic_store_n(p->tree_used, 1, __ATOMIC_SEQ_CST);

	pid = fork();
	if (pid == 0)
		exec_child(p, c, out, &cr, cmd, env.v, op.child[0] >= 0 ? op.child[0] : logfd,
			   op.child[1] >= 0 ? op.child[1] : logfd, devnull);
	err = pid < 0 ? -errno : 0;
	/* Watched before service_start is logged, whether or not the child got to it yet: a
	 * signal sent by someone who saw the start is recorded. */
	if (pid > 0 && p)
		cause_watch(p->causes_fd, pid);
	if (pid > 0 && op.ours[0] >= 0) {
		char why[512] = "";

		if (outputs_attach(p->output, c, pid, &op, why, sizeof(why)))
			append_warn(warn, warnlen, "%s", why);
	}
	out_pipes_close(&op); /* the child's ends, and ours if nobody took them */
	if (logfd >= 0)
		close(logfd);
	if (devnull >= 0)
		close(devnull);
	free(cmd);
	env_free(&env);
	if (err)
		return err;
	setpgid(pid, pid); /* both sides set it: whichever runs first wins the race */
	out->pid = pid;
	out->pgid = pid;
	out->pidfd = pidfd_open_pid(pid);
	out->start_ticks = proc_start_ticks(pid);
	return 0;
}

/* sig (0: none) to pid through a pidfd. 1 when it is alive — a zombie is not: it only waits for
 * its parent. */
static int signal_live(pid_t pid, int sig)
{
	int fd;

	if (proc_state(pid) == 'Z' || (fd = pidfd_open_pid(pid)) < 0)
		return 0;
	if (sig)
		pidfd_signal(fd, sig);
	close(fd);
	return 1;
}

/* Every process in the cgroup, also those that left the process group (setsid, a daemonizing
 * child): each through a pidfd (sig 0: only counted). Returns how many were found. */
static int signal_cgroup(const struct svc_proc *sp, int sig)
{
	char path[300];
	FILE *f;
	int pid, n = 0;

	if (!sp->cgroup[0])
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", sp->cgroup);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fscanf(f, "%d", &pid) == 1)
		n += signal_live(pid, sig);
	fclose(f);
	return n;
}

static void cgroup_kill(const struct svc_proc *sp)
{
	char path[300];
	int fd;

	if (!sp->cgroup[0])
		return;
	snprintf(path, sizeof(path), "%s/cgroup.kill", sp->cgroup);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		signal_cgroup(sp, SIGKILL); /* before 5.14 there is no cgroup.kill */
	if (fd >= 0)
		close(fd);
}

/* Every live process of the service's tree (no cgroup): each through a pidfd (sig 0: only
 * counted). */
static int signal_tree(const struct procs *p, const struct svc_proc *sp, int sig)
{
	__u32 key, next, tag;
	__u32 *prev = NULL;
	int n = 0;

	if (!p || p->tree_fd < 0 || !sp->tag)
		return 0;
	while (bpf_map_get_next_key(p->tree_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(p->tree_fd, &key, &tag) == 0 && tag == sp->tag)
			n += signal_live(key, sig);
	}
	return n;
}

void procs_set_causes(struct procs *p, int causes_fd)
{
	p->causes_fd = causes_fd;
}

void procs_set_output(struct procs *p, struct outputs *o)
{
	p->output = o;
}

int procs_exit_cause(struct procs *p, const struct svc_proc *sp, struct exit_cause *c)
{
	return cause_take(p->causes_fd, sp->pid, c);
}

int procs_count(struct procs *p, const struct svc_proc *sp)
{
	return sp->cgroup[0] ? signal_cgroup(sp, 0) : signal_tree(p, sp, 0);
}

static void signal_rest(struct procs *p, const struct svc_proc *sp, int sig)
{
	if (!sp->cgroup[0])
		signal_tree(p, sp, sig);
	else if (sig == SIGKILL)
		cgroup_kill(sp);
	else
		signal_cgroup(sp, sig);
}

void procs_signal(struct procs *p, const struct svc_proc *sp, int sig, enum sig_scope scope)
{
	/* The group reaches what the shell started; the pgid cannot be reused while any member
	 * lives, and we only signal it while our main process (its leader) was alive or just
	 * reaped by us. */
	if ((scope == SCOPE_ALL || scope == SCOPE_MAIN) && sp->pidfd >= 0)
		pidfd_signal(sp->pidfd, sig);
	if (scope == SCOPE_MAIN)
		return;
	if (sp->pgid > 1)
		kill(-sp->pgid, sig);
	if (scope != SCOPE_GROUP)
		signal_rest(p, sp, sig);
}

void procs_release(struct svc_proc *sp)
{
	if (sp->pidfd >= 0)
		close(sp->pidfd);
	sp->pidfd = -1;
	sp->pid = 0;
	sp->start_ticks = 0;
}

/* revenant-PID directories of agents that died without cleaning up: removed once empty (rmdir
 * fails on a cgroup that still has processes or children, which is the check we want). */
static void remove_stale_cgroups(const char *root)
{
	DIR *d = opendir(root);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[512];
		pid_t pid;
		DIR *sub;
		struct dirent *se;

		if (strncmp(de->d_name, "revenant-", 9))
			continue;
		pid = atoi(de->d_name + 9);
		if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
		sub = opendir(path);
		while (sub && (se = readdir(sub))) {
			char child[800];

			if (se->d_type != DT_DIR || se->d_name[0] == '.')
				continue;
			snprintf(child, sizeof(child), "%s/%s", path, se->d_name);
			rmdir(child);
		}
		if (sub)
			closedir(sub);
		rmdir(path);
	}
	closedir(d);
}

struct procs *procs_new(int tree_fd, uint32_t *tree_used)
{
	static const char *roots[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
	struct procs *p = calloc(1, sizeof(*p));
	const char *no_cgroup = getenv("REVENANT_NO_CGROUP");

	if (!p)
		return NULL;
	p->tree_fd = tree_fd;
	p->tree_used = tree_used;
	p->causes_fd = -1;
	for (size_t i = 0; i < ARRAY_SIZE(roots) && !(no_cgroup && !strcmp(no_cgroup, "1")); i++) {
		char probe[300];

		snprintf(probe, sizeof(probe), "%s/cgroup.procs", roots[i]);
		if (access(probe, W_OK))
			continue;
		remove_stale_cgroups(roots[i]);
		snprintf(p->cgroup_root, sizeof(p->cgroup_root), "%s/revenant-%d", roots[i],
			 getpid());
		if (mkdir(p->cgroup_root, 0755) == 0)
			return p;
	}
	p->cgroup_root[0] = 0;
	return p;
}

void procs_free(struct procs *p)
{
	DIR *d;
	struct dirent *de;

	if (!p)
		return;
	d = p->cgroup_root[0] ? opendir(p->cgroup_root) : NULL;
	while (d && (de = readdir(d))) {
		char child[512];

		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(child, sizeof(child), "%s/%s", p->cgroup_root, de->d_name);
		rmdir(child);
	}
	if (d)
		closedir(d);
	if (p->cgroup_root[0])
		rmdir(p->cgroup_root);
	for (size_t i = 0; i < p->n_made; i++)
		free(p->made[i]);
	free(p->made);
	free(p);
}
