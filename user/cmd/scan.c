// SPDX-License-Identifier: MIT
/* `revenant scan` and `revenant zombies`. Sources, best first: the running agent's pinned listeners
 * map (plus its pinned iterators when a socket may be shared or UDP is asked for), BPF iterators
 * loaded for this call, and (not root) a /proc walk that cannot see every owner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <cjson/cJSON.h>

#include "cmd/cli.h"
#include "cmd/scan.h"
#include "lib/agentrec.h"
#include "lib/state.h"
#include "lib/util.h"


/* --- sources --- */

static uint32_t self_netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) ? 0 : (uint32_t)st.st_ino;
}

bool scan_agent_running(const char *control_socket)
{
	char path[REV_PATH_BUF];
	int fd, rc;

	state_runtime_path(control_socket, REV_LOCK_FILE, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	rc = flock(fd, LOCK_SH | LOCK_NB);
	close(fd);
	return rc && errno == EWOULDBLOCK;
}

static int hex_addr(const char *hex, uint8_t *addr, int family)
{
	/* /proc/net prints each 32-bit word in host order */
	int words = family == REV_AF_INET6 ? 4 : 1;

	for (int w = 0; w < words; w++) {
		char part[9];
		uint32_t v;

		memcpy(part, hex + w * 8, 8);
		part[8] = 0;
		v = strtoul(part, NULL, 16);
		memcpy(addr + w * 4, &v, 4);
	}
	return 0;
}

static int proc_net(const char *file, int family, int proto, uint32_t netns, struct snap *s)
{
	char line[512];
	FILE *f = fopen(file, "re");

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		char local[64], remote[64];
		unsigned st, uid;
		unsigned long long ino;
		struct snap_sock r = {0};
		char *colon;

		if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %u %*d %llu", local, remote, &st,
			   &uid, &ino) != 5)
			continue;
		colon = strchr(local, ':');
		if (!colon)
			continue;
		*colon = 0;
		r.port = strtoul(colon + 1, NULL, 16);
		if (!r.port || (proto == REV_PROTO_TCP && st != REV_TCP_LISTEN))
			continue;
		hex_addr(local, r.addr, family);
		r.type = REV_SNAP_SOCK_TABLE;
		r.family = family;
		r.proto = proto;
		r.state = proto == REV_PROTO_TCP ? st : 7;
		r.uid = uid;
		r.ino = ino;
		r.sk = ino; /* the inode identifies the socket in this source */
		r.netns = netns;
		if (snapshot_add_sock(s, &r)) {
			fclose(f);
			return -ENOMEM;
		}
	}
	fclose(f);
	return 0;
}

static int cmp_ino(const void *a, const void *b)
{
	const struct snap_sock *x = a, *y = b;

	return (x->ino > y->ino) - (x->ino < y->ino);
}

/* Not root: the sockets of this netns from /proc/net, their holders from the /proc/PID/fd links we
 * may read. Owners whose fds we cannot read stay unknown. */
static int proc_snapshot(struct snap *s)
{
	uint32_t netns = self_netns();
	size_t n_table;
	DIR *d;
	struct dirent *de;

	memset(s, 0, sizeof(*s));
	proc_net("/proc/net/tcp", REV_AF_INET, REV_PROTO_TCP, netns, s);
	proc_net("/proc/net/tcp6", REV_AF_INET6, REV_PROTO_TCP, netns, s);
	proc_net("/proc/net/udp", REV_AF_INET, REV_PROTO_UDP, netns, s);
	proc_net("/proc/net/udp6", REV_AF_INET6, REV_PROTO_UDP, netns, s);
	n_table = s->n_socks;
	if (n_table > 1)
		qsort(s->socks, n_table, sizeof(*s->socks), cmp_ino);
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		char path[300], link[64];
		DIR *fd_dir;
		struct dirent *fe;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", pid);
		fd_dir = opendir(path);
		if (!fd_dir)
			continue;
		while ((fe = readdir(fd_dir))) {
			char fpath[600];
			ssize_t n;
			struct snap_sock key = {0}, *hit, row;

			snprintf(fpath, sizeof(fpath), "%s/%s", path, fe->d_name);
			n = readlink(fpath, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (strncmp(link, "socket:[", 8))
				continue;
			key.ino = strtoull(link + 8, NULL, 10);
			hit = bsearch(&key, s->socks, n_table, sizeof(*s->socks), cmp_ino);
			if (!hit)
				continue;
			row = *hit; /* a copy: appending may move the array hit points into */
			row.type = REV_SNAP_SOCK_FD;
			row.pid = pid;
			row.uid = proc_uid(pid);
			proc_comm(pid, row.comm, sizeof(row.comm));
			if (snapshot_add_sock(s, &row))
				break;
		}
		closedir(fd_dir);
	}
	closedir(d);
	return 0;
}

int scan_collect(const char *control_socket, bool udp, int verbose, struct scan_rows *rows)
{
	char pin_dir[256], map_path[320], err[512];
	struct snap s = {0};
	int rc = 0;

	if (!is_root()) {
		cli_err("warning: not root: reading /proc, which cannot name owners whose fds are "
			"unreadable (other users' processes, PID 1 here) nor other network namespaces; "
			"run with sudo for the kernel's answer");
		rc = proc_snapshot(&s);
		if (!rc)
			rc = scan_merge(NULL, 0, s.socks, s.n_socks, rows);
		snapshot_free(&s);
		return rc;
	}
	ports_pin_dir(control_socket, pin_dir, sizeof(pin_dir));
	snprintf(map_path, sizeof(map_path), "%s/%s", pin_dir, REV_LISTENERS_PIN);
	if (scan_agent_running(control_socket) && access(map_path, F_OK) == 0) {
		int fd = bpf_obj_get(map_path);
		bool walked = false;

		if (fd < 0) {
			rc = -errno;
			snprintf(err, sizeof(err), "%s", strerror(-rc));
		} else {
			rc = scan_rows_from_map(fd, pin_dir, udp, rows, &walked, err, sizeof(err));
			close(fd);
		}
		if (!rc) {
			if (verbose)
				cli_err("source: the agent's listeners map (%s)%s", map_path,
					walked ? " and its pinned fd iterator (a socket the map "
						 "cannot attribute)"
					       : "");
			return 0;
		}
		cli_err("warning: cannot read the agent's map %s: %s; using iterators", map_path, err);
	}
	if (verbose)
		cli_err("source: BPF iterators (no agent running for %s)", control_socket);
	rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, NULL, err, sizeof(err));
	if (rc) {
		cli_err("%s", err);
		return rc;
	}
	rc = scan_merge(NULL, 0, s.socks, s.n_socks, rows);
	snapshot_free(&s);
	return rc;
}

struct scan_opts {
	const char *config;
	bool json, tcp, udp;
	int verbose;
	int *ports;
	size_t n_ports;
};

static void scan_usage(FILE *f)
{
	fprintf(f, "usage: revenant scan [-c FILE] [--json] [--tcp] [--udp] [-v] [PORT...]\n"
		   "       revenant --scan [...]\n"
		   "\n"
		   "Who owns which port, now: TCP listeners and bound UDP sockets of every network\n"
		   "namespace, with every process holding each socket. Answers from the running\n"
		   "agent's kernel map; without an agent from BPF iterators; not root, from /proc\n"
		   "(with a warning: some owners cannot be seen that way).\n"
		   "\n"
		   "  PORT...            only these ports; exit 1 when none of them is in use\n"
		   "  --json             a JSON array, one object per socket\n"
		   "  --tcp, --udp       only this protocol (default both)\n"
		   "  -c, --config FILE  find the agent through this config's control.socket\n"
		   "                     (default: the running agent, from %s)\n"
		   "  -v, --verbose      say which source answered\n"
		   "  -h, --help         this help\n",
		   agentrec_path());
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= 1 && v <= 65535 ? (int)v : -1;
}

const char *scan_control_socket(const char *config, struct rev_config *cfg, int *rc)
{
	*rc = 0;
	/* -c; else the running agent (its record: no config to parse); else the default file, and
	 * without one the default socket (no agent: the iterators answer). */
	if (!config && cli_find_agent(cfg))
		return cfg->control.socket;
	if (config || access(config_default_path(), F_OK) == 0) {
		*rc = cli_load_config(config, cfg);
		return *rc ? NULL : cfg->control.socket;
	}
	return CONFIG_DEFAULT_CONTROL_SOCKET;
}

int cmd_scan(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"tcp", no_argument, NULL, 't'},	  {"udp", no_argument, NULL, 'u'},
		{"verbose", no_argument, NULL, 'v'},	  {"help", no_argument, NULL, 'h'},
		{0},
	};
	struct scan_opts o = {0};
	struct rev_config cfg = {0};
	struct scan_rows rows = {0};
	const char *sock;
	char *out;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:jtuvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.tcp = true;
			break;
		case 'u':
			o.udp = true;
			break;
		case 'v':
			o.verbose++;
			break;
		case 'h':
			scan_usage(stdout);
			return EXIT_OK;
		default:
			scan_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!o.tcp && !o.udp)
		o.tcp = o.udp = true;
	o.ports = calloc(argc, sizeof(int));
	for (int i = optind; i < argc; i++) {
		int p = parse_port(argv[i]);

		if (p < 0) {
			cli_err("scan: '%s' is not a port (1..65535)", argv[i]);
			free(o.ports);
			return EXIT_USAGE;
		}
		o.ports[o.n_ports++] = p;
	}
	sock = scan_control_socket(o.config, &cfg, &rc);
	if (rc) {
		free(o.ports);
		return rc;
	}
	rc = scan_collect(sock, o.udp, o.verbose, &rows);
	if (rc) {
		free(o.ports);
		config_free(&cfg);
		return rc == -EPERM ? EXIT_NOT_PERMITTED : EXIT_FAILED;
	}
	scan_filter(&rows, o.ports, o.n_ports, o.tcp, o.udp);
	scan_attribute_services(&rows, sock);
	if (o.json) {
		scan_json_write(stdout, &rows);
		fputc('\n', stdout);
	} else {
		out = scan_table(&rows, self_netns());
		if (out)
			fputs(out, stdout);
		free(out);
	}
	rc = o.n_ports && !rows.n ? EXIT_FAILED : EXIT_OK;
	if (rc && !o.json)
		fprintf(stderr, "revenant: no socket holds %s\n",
			o.n_ports == 1 ? "that port" : "any of those ports");
	scan_rows_free(&rows);
	free(o.ports);
	config_free(&cfg);
	return rc;
}

/* --- zombies --- */

static int proc_zombies(struct snap *s)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	memset(s, 0, sizeof(*s));
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		struct snap_zombie z = {0};
		char path[64], buf[512], *q;
		int fd;
		ssize_t n;

		if (pid <= 0 || proc_state(pid) != 'Z')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		q = strrchr(buf, ')');
		z.type = REV_SNAP_ZOMBIE;
		z.pid = pid;
		z.ppid = q ? atoi(q + 4) : 0;
		z.uid = proc_uid(pid);
		proc_comm(pid, z.comm, sizeof(z.comm));
		proc_comm(z.ppid, z.parent_comm, sizeof(z.parent_comm));
		if (snapshot_add_zombie(s, &z))
			break;
	}
	closedir(d);
	return 0;
}

static void zombies_usage(FILE *f)
{
	fprintf(f, "usage: revenant zombies [-c FILE] [--json] [-v]\n"
		   "\n"
		   "Every zombie process on the host now: pid, parent, age, and the supervised\n"
		   "service it belongs to. From the kernel's task list (root), else /proc.\n"
		   "\n"
		   "  --json             a JSON array, one object per zombie\n"
		   "  -c, --config FILE  find the agent (for service names) through this config\n"
		   "                     (default: the running agent)\n"
		   "  -v, --verbose      say which source answered\n"
		   "  -h, --help         this help\n");
}

int cmd_zombies(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"verbose", no_argument, NULL, 'v'},	  {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = NULL, *sock;
	struct rev_config cfg = {0};
	struct rt_state st = {0};
	bool json = false, have_state;
	int c, rc, verbose = 0;
	char err[512], pin_dir[256], path[REV_PATH_BUF];
	struct snap s;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:jvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			zombies_usage(stdout);
			return EXIT_OK;
		default:
			zombies_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("zombies: unexpected argument '%s'", argv[optind]);
		zombies_usage(stderr);
		return EXIT_USAGE;
	}
	sock = scan_control_socket(config, &cfg, &rc);
	if (rc)
		return rc;
	if (is_root()) {
		ports_pin_dir(sock, pin_dir, sizeof(pin_dir));
		rc = snapshot_take(&s, SNAP_ZOMBIES, scan_agent_running(sock) ? pin_dir : NULL, err,
				   sizeof(err));
		if (rc)
			cli_err("%s", err);
		else if (verbose)
			cli_err("source: the kernel's task list (BPF iterator)");
	} else {
		cli_err("warning: not root: reading /proc; ages are unknown");
		rc = proc_zombies(&s);
	}
	if (rc) {
		config_free(&cfg);
		return EXIT_FAILED;
	}
	state_runtime_path(sock, REV_STATE_FILE, path, sizeof(path));
	have_state = state_read(path, &st) == 0;
	if (json) {
		cJSON *arr = zombies_json(s.zombies, s.n_zombies, have_state ? &st : NULL, is_root());
		char *out = arr ? cJSON_PrintUnformatted(arr) : NULL;

		if (out)
			printf("%s\n", out);
		free(out);
		cJSON_Delete(arr);
	} else {
		printf("%-8s %-8s %-16s %-16s %-10s %s\n", "PID", "PPID", "COMM", "PARENT", "AGE",
		       "SERVICE");
		for (size_t i = 0; i < s.n_zombies; i++) {
			const struct snap_zombie *z = &s.zombies[i];
			const char *svc = have_state ? state_service_of(&st, z->ppid) : NULL;
			char age[32];

			if (is_root())
				snprintf(age, sizeof(age), "%.1fs", z->age_ns / 1e9);
			else
				snprintf(age, sizeof(age), "?");
			printf("%-8d %-8d %-16s %-16s %-10s %s\n", z->pid, z->ppid, z->comm,
			       z->parent_comm, age, svc ? svc : "-");
		}
	}
	state_free(&st);
	snapshot_free(&s);
	config_free(&cfg);
	return EXIT_OK;
}
