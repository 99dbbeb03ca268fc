// SPDX-License-Identifier: MIT
/* The configuration file: checks revenant.json against the whole schema of DESIGN.md and turns it
 * into a struct rev_config with defaults filled in and every path made absolute. It owns the
 * messages a user sees for a bad config: the file, line:col or the key path, and what to do. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lib/config.h"
#include "lib/safefs.h"
#include "lib/util.h"

#define CONFIG_MAX_BYTES (16 << 20)
#define NAME_MAX_LEN	 64
#define KP_LEN		 320

/* Everything a check needs to say where it failed. */
struct ctx {
	const char *path;
	char *err;
	size_t errlen;
};

static int fail(struct ctx *c, const char *kp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const char *kp, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (!c->err || !c->errlen)
		return -EINVAL;
	if (kp && *kp)
		n = snprintf(c->err, c->errlen, "%s: %s: ", c->path, kp);
	else
		n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Key paths are for messages only: a truncated one is harmless, so no caller checks. */
static void kp_fmt(char *kp, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kp_fmt(char *kp, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(kp, len, fmt, ap);
	va_end(ap);
}

/* ---- paths ---- */

/* Lexical clean of an absolute path ("a//b/./c/../d" -> "/a/b/d"), the way Go's filepath.Clean
 * does it: the base directory is already realpath()ed, so only the user's own part is cleaned. */
static char *path_clean(const char *p)
{
	size_t len = strlen(p);
	char *out = malloc(len + 2);
	size_t o = 0;

	if (!out)
		return NULL;
	while (*p) {
		const char *s;
		size_t n;

		while (*p == '/')
			p++;
		s = p;
		while (*p && *p != '/')
			p++;
		n = p - s;
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		out[o++] = '/';
		memcpy(out + o, s, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return out;
}

/* rel against base (absolute), cleaned; rel may itself be absolute. */
static char *path_resolve(const char *base, const char *rel)
{
	char *joined, *out;

	if (rel[0] == '/')
		return path_clean(rel);
	if (asprintf(&joined, "%s/%s", base, rel) < 0)
		return NULL;
	out = path_clean(joined);
	free(joined);
	return out;
}

static char *path_dirname(const char *p)
{
	const char *slash = strrchr(p, '/');

	if (!slash)
		return strdup(".");
	while (slash > p && slash[-1] == '/')
		slash--;
	if (slash == p)
		return strdup("/");
	return strndup(p, slash - p);
}

/* realpath() of the file's directory, or, because config_parse must work on text whose file need
 * not exist (tests, `-c` of a file being written), the same worked out lexically. */
static int config_dir(const char *path, char **out)
{
	char *d = path_dirname(path);
	char *r, cwd[PATH_MAX];
	int ret = 0;

	if (!d)
		return -ENOMEM;
	r = realpath(d, NULL);
	if (r) {
		*out = r;
	} else if (d[0] == '/') {
		*out = path_clean(d);
	} else if (getcwd(cwd, sizeof(cwd))) {
		*out = path_resolve(cwd, d);
	} else {
		ret = -errno;
	}
	if (!ret && !*out)
		ret = -ENOMEM;
	free(d);
	return ret;
}

/* ---- JSON values ---- */

static const char *type_name(const cJSON *it)
{
	if (cJSON_IsString(it))
		return "string";
	if (cJSON_IsNumber(it))
		return "number";
	if (cJSON_IsBool(it))
		return "boolean";
	if (cJSON_IsNull(it))
		return "null";
	if (cJSON_IsObject(it))
		return "object";
	if (cJSON_IsArray(it))
		return "array";
	return "invalid value";
}

/* "string \"12001\"", "number 1.5", "boolean true": the value itself tells the user most. */
static void describe(const cJSON *it, char *buf, size_t len)
{
	if (cJSON_IsString(it)) {
		const char *s = it->valuestring;

		if (strlen(s) > 32)
			snprintf(buf, len, "string \"%.29s...\"", s);
		else
			snprintf(buf, len, "string \"%s\"", s);
	} else if (cJSON_IsNumber(it)) {
		snprintf(buf, len, "number %.17g", it->valuedouble);
	} else if (cJSON_IsBool(it)) {
		snprintf(buf, len, "boolean %s", cJSON_IsTrue(it) ? "true" : "false");
	} else {
		snprintf(buf, len, "%s", type_name(it));
	}
}

static int wrong_type(struct ctx *c, const char *kp, const char *want, const cJSON *it)
{
	char got[64];

	describe(it, got, sizeof(got));
	return fail(c, kp, "expected %s, got %s", want, got);
}

static int get_int(struct ctx *c, const cJSON *it, const char *kp, long long lo, long long hi,
		   long long *out)
{
	double d;

	if (!cJSON_IsNumber(it))
		return wrong_type(c, kp, "an integer", it);
	d = it->valuedouble;
	if (!isfinite(d) || d != floor(d))
		return wrong_type(c, kp, "an integer", it);
	if (d < (double)lo || d > (double)hi) {
		if (fabs(d) < 1e18)
			return fail(c, kp, "%.0f is out of range %lld..%lld", d, lo, hi);
		return fail(c, kp, "%g is out of range %lld..%lld", d, lo, hi);
	}
	*out = (long long)d;
	return 0;
}

static int get_int32(struct ctx *c, const cJSON *it, const char *kp, int lo, int hi, int *out)
{
	long long v;
	int ret = get_int(c, it, kp, lo, hi, &v);

	if (!ret)
		*out = (int)v;
	return ret;
}

static int get_bool(struct ctx *c, const cJSON *it, const char *kp, bool *out)
{
	if (!cJSON_IsBool(it))
		return wrong_type(c, kp, "a boolean", it);
	*out = cJSON_IsTrue(it);
	return 0;
}

static int get_str(struct ctx *c, const cJSON *it, const char *kp, const char **out)
{
	*out = NULL;
	if (!cJSON_IsString(it) || !it->valuestring)
		return wrong_type(c, kp, "a string", it);
	*out = it->valuestring;
	return 0;
}

static int get_obj(struct ctx *c, const cJSON *it, const char *kp)
{
	return cJSON_IsObject(it) ? 0 : wrong_type(c, kp, "an object", it);
}

static int get_arr(struct ctx *c, const cJSON *it, const char *kp)
{
	return cJSON_IsArray(it) ? 0 : wrong_type(c, kp, "an array", it);
}

/* A path that the file may give relative to its own directory. */
static int get_path(struct ctx *c, const cJSON *it, const char *kp, const char *dir, char **out)
{
	const char *s;
	int ret = get_str(c, it, kp, &s);

	if (ret)
		return ret;
	if (!*s)
		return fail(c, kp, "empty path (remove the key for the default, or give a path)");
	free(*out);
	*out = path_resolve(dir, s);
	return *out ? 0 : -ENOMEM;
}

/* A file the agent reads or writes that already exists must be a regular file (a FIFO would
 * block the agent, /dev/zero never end); max_bytes 0: no size limit. Missing is fine here. */
static int check_file_kind(struct ctx *c, const char *kp, const char *path, long long max_bytes,
			   bool devnull_ok)
{
	struct stat st;

	if (stat(path, &st))
		return 0;
	if (devnull_ok && S_ISCHR(st.st_mode) && !strcmp(path, "/dev/null"))
		return 0;
	if (!S_ISREG(st.st_mode))
		return fail(c, kp, "%s is %s, not a regular file (give a regular file)", path,
			    S_ISDIR(st.st_mode)	   ? "a directory"
			    : S_ISFIFO(st.st_mode) ? "a FIFO"
			    : S_ISCHR(st.st_mode)  ? "a character device"
			    : S_ISBLK(st.st_mode)  ? "a block device"
			    : S_ISSOCK(st.st_mode) ? "a socket"
						   : "not a regular file");
	if (max_bytes && st.st_size > max_bytes)
		return fail(c, kp, "%s is %lld bytes, more than the %lld an env_file may have", path,
			    (long long)st.st_size, max_bytes);
	return 0;
}

static int set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	return *dst ? 0 : -ENOMEM;
}

/* ---- keys ---- */

static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[33];

	if (la > 32 || lb > 32)
		return INT_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static int unknown_key(struct ctx *c, const char *kp, const char *const *known, int n,
		       const char *key)
{
	char list[512];
	size_t o = 0;
	int best = -1, bestd = 3;

	list[0] = '\0';
	for (int i = 0; i < n; i++) {
		int d = edit_distance(key, known[i]);

		if (o < sizeof(list))
			o += snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", known[i]);
		if (d < bestd) {
			bestd = d;
			best = i;
		}
	}
	if (best >= 0)
		return fail(c, kp, "unknown key (known: %s); did you mean \"%s\"?", list,
			    known[best]);
	return fail(c, kp, "unknown key (known: %s)", list);
}

/* Index of `key` in known[] or a message. cJSON keeps duplicate keys, and its lookups are
 * case-insensitive and first-wins: we walk the children ourselves so neither goes unnoticed. */
static int key_index(struct ctx *c, const char *parent, const cJSON *it, const char *const *known,
		     int n, unsigned *seen, char *kp, size_t kplen)
{
	const char *key = it->string ? it->string : "";

	if (parent && *parent)
		kp_fmt(kp, kplen, "%s.%s", parent, key);
	else
		kp_fmt(kp, kplen, "%s", key);
	for (int i = 0; i < n; i++) {
		if (strcmp(key, known[i]))
			continue;
		if (*seen & (1u << i))
			return fail(c, kp, "key given twice (keep one)");
		*seen |= 1u << i;
		return i;
	}
	return unknown_key(c, kp, known, n, key);
}

/* Runs the body once per key of obj with k = its index in known[] and kp = its key path; an unknown
 * or repeated key returns the error from the enclosing function. */
#define FOR_EACH_KEY(c, obj, parent, known, seen, k, it, kp)                                       \
	for ((it) = (obj)->child; (it); (it) = (it)->next)                                         \
		if (((k) = key_index(c, parent, it, known, (int)ARRAY_SIZE(known), &(seen), kp,    \
				     sizeof(kp))) < 0)                                             \
			return k;                                                                  \
		else

/* ---- sections ---- */

enum { MON_ENABLED, MON_GRACE, MON_AUTO };
static const char *const mon_keys[] = {"enabled", "zombie_grace_ms", "auto_resolve_conflicts"};

static int parse_monitoring(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, "monitoring")))
		return ret;
	FOR_EACH_KEY(c, obj, "monitoring", mon_keys, seen, k, it, kp)
	{
		switch (k) {
		case MON_ENABLED:
			ret = get_bool(c, it, kp, &cfg->monitoring.enabled);
			break;
		case MON_GRACE:
			ret = get_int32(c, it, kp, 0, 3600000, &cfg->monitoring.zombie_grace_ms);
			break;
		case MON_AUTO:
			ret = get_bool(c, it, kp, &cfg->monitoring.auto_resolve_conflicts);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

enum { CR_STRATEGY, CR_MIGRATION, CR_PRESERVE };
static const char *const cr_keys[] = {"strategy", "allow_port_migration",
				      "preserve_external_processes"};

static int parse_conflict(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	const char *s;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, "conflict_resolution")))
		return ret;
	FOR_EACH_KEY(c, obj, "conflict_resolution", cr_keys, seen, k, it, kp)
	{
		switch (k) {
		case CR_STRATEGY:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (strcmp(s, "intelligent") && strcmp(s, "migrate") && strcmp(s, "fail"))
				return fail(c, kp,
					    "unknown strategy \"%s\" (use \"intelligent\", "
					    "\"migrate\" or \"fail\")",
					    s);
			ret = set_str(&cfg->conflict.strategy, s);
			break;
		case CR_MIGRATION:
			ret = get_bool(c, it, kp, &cfg->conflict.allow_port_migration);
			break;
		case CR_PRESERVE:
			ret = get_bool(c, it, kp, &cfg->conflict.preserve_external_processes);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

enum { LOG_PATH, LOG_MAX, LOG_KEEP, LOG_COMPRESS };
static const char *const log_keys[] = {"path", "max_bytes", "keep", "compress"};

static int parse_log(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, "log")))
		return ret;
	FOR_EACH_KEY(c, obj, "log", log_keys, seen, k, it, kp)
	{
		switch (k) {
		case LOG_PATH:
			ret = get_path(c, it, kp, cfg->dir, &cfg->log.path);
			break;
		case LOG_MAX:
			ret = get_int(c, it, kp, 4096, 1LL << 40, &cfg->log.max_bytes);
			break;
		case LOG_KEEP:
			ret = get_int32(c, it, kp, 0, 1000, &cfg->log.keep);
			break;
		case LOG_COMPRESS:
			ret = get_bool(c, it, kp, &cfg->log.compress);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

static const char *const control_keys[] = {"socket"};

static int parse_control(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	struct sockaddr_un sun;
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, "control")))
		return ret;
	FOR_EACH_KEY(c, obj, "control", control_keys, seen, k, it, kp)
	{
		if ((ret = get_path(c, it, kp, cfg->dir, &cfg->control.socket)))
			return ret;
		/* bind() would fail much later, and with a less helpful ENAMETOOLONG */
		if (strlen(cfg->control.socket) >= sizeof(sun.sun_path))
			return fail(c, kp,
				    "\"%s\" is %zu bytes, longer than the %zu a unix socket path "
				    "may have (use a shorter path)",
				    cfg->control.socket, strlen(cfg->control.socket),
				    sizeof(sun.sun_path) - 1);
	}
	return 0;
}

/* "host:port", "[::1]:port"; the metrics module hands it to getaddrinfo() as is. */
static bool valid_listen(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || colon == s || !colon[1])
		return false;
	if (s[0] == '[') {
		if (colon[-1] != ']' || colon - s < 3)
			return false;
	} else if (memchr(s, ':', colon - s)) {
		return false; /* a bare IPv6 address is ambiguous */
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return !errno && !*end && colon[1] >= '0' && colon[1] <= '9' && port >= 1 && port <= 65535;
}

enum { MET_LISTEN, MET_CONTROL, MET_TOKEN };
static const char *const metrics_keys[] = {"listen", "control", "token_file"};

static int parse_metrics(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	const char *s;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, "metrics")))
		return ret;
	FOR_EACH_KEY(c, obj, "metrics", metrics_keys, seen, k, it, kp)
	{
		switch (k) {
		case MET_CONTROL:
			ret = get_bool(c, it, kp, &cfg->metrics.control);
			break;
		case MET_TOKEN:
			ret = get_path(c, it, kp, cfg->dir, &cfg->metrics.token_file);
			break;
		case MET_LISTEN:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (!*s) {
				/* "" turns the endpoint off: consumers test for NULL */
				free(cfg->metrics.listen);
				cfg->metrics.listen = NULL;
				continue;
			}
			if (!valid_listen(s))
				return fail(c, kp,
					    "\"%s\" is not host:port (e.g. \"127.0.0.1:9464\", "
					    "\"[::1]:9464\", or \"\" to disable metrics)",
					    s);
			ret = set_str(&cfg->metrics.listen, s);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- services ---- */

enum { H_HTTP, H_TCP, H_INTERVAL, H_TIMEOUT, H_FAILURES, H_GRACE };
static const char *const health_keys[] = {"http",	"tcp",	    "interval_ms",
					  "timeout_ms", "failures", "grace_ms"};

static int parse_health(struct ctx *c, const cJSON *obj, const char *parent,
			struct health_config *h)
{
	char kp[KP_LEN];
	unsigned seen = 0;
	const cJSON *it;
	const char *s;
	int k, ret = 0;

	if ((ret = get_obj(c, obj, parent)))
		return ret;
	h->enabled = true;
	FOR_EACH_KEY(c, obj, parent, health_keys, seen, k, it, kp)
	{
		switch (k) {
		case H_HTTP:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (s[0] != '/')
				return fail(c, kp,
					    "\"%s\" must start with \"/\" (e.g. \"/health\")", s);
			/* it goes verbatim into the request line */
			for (const char *p = s; *p; p++)
				if ((unsigned char)*p <= ' ' || *p == 0x7f)
					return fail(c, kp,
						    "contains a space or control character "
						    "(percent-encode it, e.g. %%20)");
			ret = set_str(&h->http, s);
			break;
		case H_TCP:
			ret = get_bool(c, it, kp, &h->tcp);
			break;
		case H_INTERVAL:
			ret = get_int32(c, it, kp, 100, 3600000, &h->interval_ms);
			break;
		case H_TIMEOUT:
			ret = get_int32(c, it, kp, 10, 600000, &h->timeout_ms);
			break;
		case H_FAILURES:
			ret = get_int32(c, it, kp, 1, 100, &h->failures);
			break;
		case H_GRACE:
			ret = get_int32(c, it, kp, 0, 3600000, &h->grace_ms);
			break;
		}
		if (ret)
			return ret;
	}
	if (h->http && h->tcp)
		return fail(c, parent,
			    "has both \"http\" and \"tcp\": true (keep one kind of check)");
	if (!h->http && !h->tcp)
		return fail(c, parent,
			    "no check given (add \"http\": \"/health\" or \"tcp\": true)");
	return 0;
}

static int parse_stop_signal(struct ctx *c, const cJSON *it, const char *kp, int *out)
{
	long long v;
	int sig, ret;

	if (cJSON_IsNumber(it)) {
		if ((ret = get_int(c, it, kp, 1, 64, &v)))
			return ret;
		*out = (int)v;
		return 0;
	}
	if (!cJSON_IsString(it))
		return wrong_type(c, kp, "a signal name or number", it);
	sig = signal_from_name(it->valuestring);
	if (sig <= 0)
		return fail(c, kp,
			    "unknown signal \"%s\" (use a name like \"SIGTERM\" or \"INT\", "
			    "or a number 1..64)",
			    it->valuestring);
	*out = sig;
	return 0;
}

static int parse_env(struct ctx *c, const cJSON *obj, const char *parent, struct service_config *sv)
{
	char kp[KP_LEN];
	const cJSON *it, *o;
	int n = cJSON_GetArraySize(obj);

	if (!n)
		return 0;
	sv->env = calloc(n, sizeof(*sv->env));
	if (!sv->env)
		return -ENOMEM;
	cJSON_ArrayForEach(it, obj)
	{
		const char *key = it->string ? it->string : "";

		kp_fmt(kp, sizeof(kp), "%s.%s", parent, key);
		if (!*key || strchr(key, '='))
			return fail(c, kp, "\"%s\" is not a variable name (no '=', not empty)",
				    key);
		for (o = obj->child; o != it; o = o->next)
			if (!strcmp(o->string, key))
				return fail(c, kp, "variable given twice (keep one)");
		if (!cJSON_IsString(it))
			return fail(c, kp,
				    "expected a string, got %s (environment values are "
				    "strings: quote it)",
				    type_name(it));
		if (asprintf(&sv->env[sv->n_env], "%s=%s", key, it->valuestring) < 0) {
			sv->env[sv->n_env] = NULL;
			return -ENOMEM;
		}
		sv->n_env++;
	}
	return 0;
}

static int parse_alt_ports(struct ctx *c, const cJSON *arr, const char *parent,
			   struct service_config *sv)
{
	char kp[KP_LEN];
	const cJSON *it;
	int n, ret;

	if ((ret = get_arr(c, arr, parent)))
		return ret;
	n = cJSON_GetArraySize(arr);
	if (!n)
		return 0;
	sv->alt_ports = calloc(n, sizeof(*sv->alt_ports));
	if (!sv->alt_ports)
		return -ENOMEM;
	cJSON_ArrayForEach(it, arr)
	{
		kp_fmt(kp, sizeof(kp), "%s[%d]", parent, sv->n_alt);
		if ((ret = get_int32(c, it, kp, 1, 65535, &sv->alt_ports[sv->n_alt])))
			return ret;
		sv->n_alt++;
	}
	return 0;
}

/* An array of service names (depends_on, part_of), each once; room for one more, which
 * part_of's entries need in depends_on. */
static int parse_names(struct ctx *c, const cJSON *arr, const char *parent, char ***out, int *n)
{
	char kp[KP_LEN];
	const cJSON *it;
	const char *s;
	int ret;

	if ((ret = get_arr(c, arr, parent)))
		return ret;
	*out = calloc(cJSON_GetArraySize(arr) + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	cJSON_ArrayForEach(it, arr)
	{
		kp_fmt(kp, sizeof(kp), "%s[%d]", parent, *n);
		if ((ret = get_str(c, it, kp, &s)))
			return ret;
		for (int i = 0; i < *n; i++)
			if (!strcmp((*out)[i], s))
				return fail(c, kp, "\"%s\" is listed twice (keep one)", s);
		if (!((*out)[*n] = strdup(s)))
			return -ENOMEM;
		(*n)++;
	}
	return 0;
}

/* A service name becomes a file name (its log), a cgroup directory and an environment variable's
 * value: [A-Za-z0-9_][A-Za-z0-9_-]{0,63}. No '.', so never "." or ".."; no '/'; no leading '-'
 * (it would read as an option to the tools that get it). */
static bool valid_name(const char *s)
{
	static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN || s[0] == '-')
		return false;
	return strspn(s, ok) == n;
}

/* The name as a message may show it: printable ASCII, the rest as \xNN, at most 64 characters. */
static void printable_name(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = 0;
	for (int i = 0; s[i] && i < 64 && o + 5 < len; i++) {
		unsigned char c = s[i];

		o += snprintf(buf + o, len - o, c >= ' ' && c < 0x7f ? "%c" : "\\x%02x", c);
	}
}

enum {
	S_COMMAND,
	S_CWD,
	S_ENV,
	S_ENV_FILE,
	S_PORT,
	S_ALT_PORTS,
	S_AUTO_RESTART,
	S_MAX_RESTARTS,
	S_CRITICAL,
	S_DEPENDS_ON,
	S_HEALTH,
	S_STOP_SIGNAL,
	S_STOP_TIMEOUT,
	S_ZOMBIE_POLICY,
	S_LOG_FILE,
	S_KILL_MODE,
	S_USER,
	S_GROUP,
	S_UMASK,
	S_NO_NEW_PRIVS,
	S_RESTART_DELAY,
	S_RESTART_DELAY_MAX,
	S_PART_OF,
	S_STDERR_FILE,
	S_LOG_MAX_BYTES,
	S_LOG_KEEP,
	S_LOG_TIMESTAMPS,
};
static const char *const service_keys[] = {
    "command",	       "cwd",		"env",	    "env_file",	  "port",   "alternative_ports",
    "auto_restart",    "max_restarts",	"critical", "depends_on", "health", "stop_signal",
    "stop_timeout_ms", "zombie_policy", "log_file",   "kill_mode",	  "user",   "group",
    "umask",	       "no_new_privileges", "restart_delay_ms", "restart_delay_max_ms", "part_of",
    "stderr_file",     "log_max_bytes", "log_keep", "log_timestamps",
};

/* key_index() tracks the keys already seen in one bit each */
_Static_assert(ARRAY_SIZE(service_keys) <= 32, "too many keys for the seen bitmap");

static void service_defaults(struct service_config *sv)
{
	sv->auto_restart = true;
	sv->max_restarts = 3;
	sv->health.interval_ms = 5000;
	sv->health.timeout_ms = 1000;
	sv->health.failures = 3;
	sv->stop_signal = SIGTERM;
	sv->stop_timeout_ms = 5000;
	sv->zombie_policy = ZOMBIE_NUDGE;
	sv->log_max_bytes = 10485760;
	sv->log_keep = 5;
	sv->log_timestamps = true;
	sv->umask = -1;
	sv->restart_delay_ms = 250;
	sv->restart_delay_max_ms = 30000;
}

/* The passwd entry of name: uid, primary gid, home. */
static int resolve_user(struct ctx *c, const char *kp, const char *name, struct service_config *sv)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (rc || !res)
		return fail(c, kp, "no user named \"%s\" on this host (check /etc/passwd or create it)",
			    name);
	sv->uid = pw.pw_uid;
	if (!sv->group)
		sv->gid = pw.pw_gid;
	return set_str(&sv->home, pw.pw_dir);
}

static int resolve_group(struct ctx *c, const char *kp, const char *name, struct service_config *sv)
{
	struct group gr, *res = NULL;
	char buf[8192];
	int rc = getgrnam_r(name, &gr, buf, sizeof(buf), &res);

	if (rc || !res)
		return fail(c, kp, "no group named \"%s\" on this host (check /etc/group)", name);
	sv->gid = gr.gr_gid;
	return 0;
}

static int parse_umask(struct ctx *c, const cJSON *it, const char *kp, int *out)
{
	const char *s;
	char *end;
	long v;
	int ret;

	if ((ret = get_str(c, it, kp, &s)))
		return ret;
	v = strtol(s, &end, 8);
	if (!*s || *end || v < 0 || v > 0777)
		return fail(c, kp, "\"%s\" is not an octal mode such as \"0027\"", s);
	*out = (int)v;
	return 0;
}

static int parse_service(struct ctx *c, const cJSON *obj, struct rev_config *cfg,
			 struct service_config *sv)
{
	char kp[KP_LEN], base[16 + NAME_MAX_LEN];
	unsigned seen = 0;
	const cJSON *it;
	const char *s;
	int k, ret = 0;

	snprintf(base, sizeof(base), "services.%s", sv->name);
	if ((ret = get_obj(c, obj, base)))
		return ret;
	FOR_EACH_KEY(c, obj, base, service_keys, seen, k, it, kp)
	{
		switch (k) {
		case S_COMMAND:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (!s[strspn(s, " \t\r\n")])
				return fail(c, kp, "empty (every service needs a command)");
			ret = set_str(&sv->command, s);
			break;
		case S_CWD:
			ret = get_path(c, it, kp, cfg->dir, &sv->cwd);
			break;
		case S_ENV:
			if ((ret = get_obj(c, it, kp)))
				return ret;
			ret = parse_env(c, it, kp, sv);
			break;
		case S_ENV_FILE:
			ret = get_path(c, it, kp, cfg->dir, &sv->env_file);
			break;
		case S_PORT:
			ret = get_int32(c, it, kp, 1, 65535, &sv->port);
			break;
		case S_ALT_PORTS:
			ret = parse_alt_ports(c, it, kp, sv);
			break;
		case S_AUTO_RESTART:
			ret = get_bool(c, it, kp, &sv->auto_restart);
			break;
		case S_MAX_RESTARTS:
			ret = get_int32(c, it, kp, -1, 1000, &sv->max_restarts);
			break;
		case S_CRITICAL:
			ret = get_bool(c, it, kp, &sv->critical);
			break;
		case S_DEPENDS_ON:
			ret = parse_names(c, it, kp, &sv->depends_on, &sv->n_deps);
			break;
		case S_HEALTH:
			ret = parse_health(c, it, kp, &sv->health);
			break;
		case S_STOP_SIGNAL:
			ret = parse_stop_signal(c, it, kp, &sv->stop_signal);
			break;
		case S_STOP_TIMEOUT:
			ret = get_int32(c, it, kp, 0, 3600000, &sv->stop_timeout_ms);
			break;
		case S_ZOMBIE_POLICY:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (!strcmp(s, "report"))
				sv->zombie_policy = ZOMBIE_REPORT;
			else if (!strcmp(s, "nudge"))
				sv->zombie_policy = ZOMBIE_NUDGE;
			else if (!strcmp(s, "restart_parent"))
				sv->zombie_policy = ZOMBIE_RESTART_PARENT;
			else
				return fail(c, kp,
					    "unknown policy \"%s\" (use \"report\", \"nudge\" or "
					    "\"restart_parent\")",
					    s);
			break;
		case S_LOG_FILE:
			ret = get_path(c, it, kp, cfg->dir, &sv->log_file);
			break;
		case S_STDERR_FILE:
			ret = get_path(c, it, kp, cfg->dir, &sv->stderr_file);
			break;
		case S_LOG_MAX_BYTES:
			ret = get_int(c, it, kp, 0, 1LL << 40, &sv->log_max_bytes);
			if (!ret && sv->log_max_bytes && sv->log_max_bytes < 4096)
				return fail(c, kp,
					    "%lld is out of range 4096..%lld (or 0: never rotate)",
					    sv->log_max_bytes, 1LL << 40);
			break;
		case S_LOG_KEEP:
			ret = get_int32(c, it, kp, 0, 1000, &sv->log_keep);
			break;
		case S_LOG_TIMESTAMPS:
			ret = get_bool(c, it, kp, &sv->log_timestamps);
			break;
		case S_USER:
			if ((ret = get_str(c, it, kp, &s)) || (ret = set_str(&sv->user, s)))
				return ret;
			break;
		case S_GROUP:
			if ((ret = get_str(c, it, kp, &s)) || (ret = set_str(&sv->group, s)))
				return ret;
			break;
		case S_UMASK:
			ret = parse_umask(c, it, kp, &sv->umask);
			break;
		case S_NO_NEW_PRIVS:
			ret = get_bool(c, it, kp, &sv->no_new_privileges);
			break;
		case S_RESTART_DELAY:
			ret = get_int32(c, it, kp, 0, 3600000, &sv->restart_delay_ms);
			break;
		case S_RESTART_DELAY_MAX:
			ret = get_int32(c, it, kp, 0, 86400000, &sv->restart_delay_max_ms);
			break;
		case S_PART_OF:
			ret = parse_names(c, it, kp, &sv->part_of, &sv->n_part_of);
			break;
		case S_KILL_MODE:
			if ((ret = get_str(c, it, kp, &s)))
				return ret;
			if (!strcmp(s, "group"))
				sv->kill_mode = KILL_GROUP;
			else if (!strcmp(s, "main"))
				sv->kill_mode = KILL_MAIN;
			else
				return fail(c, kp, "unknown kill mode \"%s\" (use \"group\" or \"main\")",
					    s);
			break;
		}
		if (ret)
			return ret;
	}

	if (!sv->command) {
		kp_fmt(kp, sizeof(kp), "%s.command", base);
		return fail(c, kp, "missing (every service needs a command)");
	}
	if (sv->group) {
		kp_fmt(kp, sizeof(kp), "%s.group", base);
		if ((ret = resolve_group(c, kp, sv->group, sv)))
			return ret;
	}
	if (sv->user) {
		kp_fmt(kp, sizeof(kp), "%s.user", base);
		if ((ret = resolve_user(c, kp, sv->user, sv)))
			return ret;
	} else if (sv->group) {
		kp_fmt(kp, sizeof(kp), "%s.group", base);
		return fail(c, kp, "needs \"user\" too (a service runs as root otherwise)");
	}
	if (sv->restart_delay_max_ms < sv->restart_delay_ms) {
		kp_fmt(kp, sizeof(kp), "%s.restart_delay_max_ms", base);
		return fail(c, kp, "%d is less than restart_delay_ms (%d)", sv->restart_delay_max_ms,
			    sv->restart_delay_ms);
	}
	/* part_of implies depends_on: the service starts after what it is part of. */
	for (int i = 0; i < sv->n_part_of; i++) {
		bool listed = false;
		char **deps;

		for (int d = 0; d < sv->n_deps; d++)
			listed |= !strcmp(sv->depends_on[d], sv->part_of[i]);
		if (listed)
			continue;
		deps = realloc(sv->depends_on, (sv->n_deps + 2) * sizeof(*deps));
		if (!deps)
			return -ENOMEM;
		sv->depends_on = deps;
		if (!(deps[sv->n_deps] = strdup(sv->part_of[i])))
			return -ENOMEM;
		deps[++sv->n_deps] = NULL;
	}
	if (!(sv->fingerprint = cJSON_PrintUnformatted(obj)))
		return -ENOMEM;
	if (!sv->port && strstr(sv->command, "{port}")) {
		kp_fmt(kp, sizeof(kp), "%s.command", base);
		return fail(c, kp, "uses {port} but the service has no \"port\" (add one)");
	}
	if (sv->health.enabled && !sv->port) {
		kp_fmt(kp, sizeof(kp), "%s.health", base);
		return fail(c, kp, "a health check needs the service's \"port\" (add one)");
	}
	for (int i = 0; i < sv->n_alt; i++) {
		kp_fmt(kp, sizeof(kp), "%s.alternative_ports[%d]", base, i);
		if (sv->alt_ports[i] == sv->port)
			return fail(c, kp, "port %d is listed twice (it is also the \"port\")",
				    sv->port);
		for (int j = 0; j < i; j++)
			if (sv->alt_ports[j] == sv->alt_ports[i])
				return fail(c, kp,
					    "port %d is listed twice (also alternative_ports[%d])",
					    sv->alt_ports[i], j);
	}
	return 0;
}

static int service_index(const struct rev_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_services; i++)
		if (cfg->services[i].name && !strcmp(cfg->services[i].name, name))
			return i;
	return -1;
}

/* What parse_service() could not fill: those defaults depend on the log section and the dir. */
static int service_finish(struct rev_config *cfg, struct service_config *sv)
{
	char *fp;

	if (!sv->cwd && !(sv->cwd = strdup(cfg->dir)))
		return -ENOMEM;
	if (!sv->log_file) {
		char *d = path_dirname(cfg->log.path), file[NAME_MAX_LEN + 8];
		size_t len = d ? strlen(d) + sizeof(file) + 2 : 0;
		int rc;

		if (!d || !(sv->log_file = malloc(len))) {
			free(d);
			return -ENOMEM;
		}
		/* The name is an identifier already; the join still proves it stays in d. */
		snprintf(file, sizeof(file), "%s.log", sv->name);
		rc = path_child(sv->log_file, len, d, file);
		free(d);
		if (rc) {
			free(sv->log_file);
			sv->log_file = NULL;
			return rc;
		}
	}
	if (!sv->stderr_file && !(sv->stderr_file = strdup(sv->log_file)))
		return -ENOMEM;
	/* What it resolved to counts as a setting too: a moved log directory changes it. */
	if (asprintf(&fp, "%s|%s|%s|%s", sv->fingerprint, sv->cwd, sv->log_file,
		     sv->stderr_file) < 0)
		return -ENOMEM;
	free(sv->fingerprint);
	sv->fingerprint = fp;
	return 0;
}

void config_port_var(const char *name, char *buf, size_t len)
{
	size_t n = snprintf(buf, len, "REVENANT_PORT_");

	for (const char *p = name; *p && n + 1 < len; p++)
		buf[n++] = isalnum((unsigned char)*p) ? toupper((unsigned char)*p) : '_';
	if (n < len)
		buf[n] = 0;
}

/* Every {port:NAME} in s names a service with a port (the first that does not, in *bad). */
static bool port_refs_ok(const struct rev_config *cfg, const char *s, char *bad, size_t badlen)
{
	for (const char *p = strstr(s, "{port:"); p; p = strstr(p + 1, "{port:")) {
		const char *name = p + 6, *end = strchr(name, '}');
		int i;

		if (!end)
			break; /* not a reference: left as written */
		for (i = 0; i < cfg->n_services; i++)
			if (strlen(cfg->services[i].name) == (size_t)(end - name) &&
			    !strncmp(cfg->services[i].name, name, end - name) && cfg->services[i].port)
				break;
		if (i == cfg->n_services) {
			snprintf(bad, badlen, "%.*s", (int)(end - name), name);
			return false;
		}
	}
	return true;
}

bool config_uses_port_of(const struct service_config *sv, const char *name)
{
	char ref[80], var[80];

	snprintf(ref, sizeof(ref), "{port:%s}", name);
	config_port_var(name, var, sizeof(var));
	if (strstr(sv->command, ref) || strstr(sv->command, var))
		return true;
	for (int i = 0; i < sv->n_env; i++)
		if (strstr(sv->env[i], ref) || strstr(sv->env[i], var))
			return true;
	return false;
}

static int check_port_refs(struct ctx *c, const struct rev_config *cfg)
{
	char kp[KP_LEN], bad[80];

	for (int i = 0; i < cfg->n_services; i++) {
		const struct service_config *sv = &cfg->services[i];

		kp_fmt(kp, sizeof(kp), "services.%s.command", sv->name);
		if (!port_refs_ok(cfg, sv->command, bad, sizeof(bad)))
			return fail(c, kp, "{port:%s}: no service named \"%s\" with a \"port\"", bad,
				    bad);
		for (int e = 0; e < sv->n_env; e++) {
			kp_fmt(kp, sizeof(kp), "services.%s.env.%.*s", sv->name,
			       (int)strcspn(sv->env[e], "="), sv->env[e]);
			if (!port_refs_ok(cfg, sv->env[e], bad, sizeof(bad)))
				return fail(c, kp, "{port:%s}: no service named \"%s\" with a \"port\"",
					    bad, bad);
		}
		for (int p = 0; p < sv->n_part_of; p++) {
			kp_fmt(kp, sizeof(kp), "services.%s.part_of[%d]", sv->name, p);
			if (service_index(cfg, sv->part_of[p]) < 0)
				return fail(c, kp, "no service named \"%s\"", sv->part_of[p]);
		}
	}
	return 0;
}

static int check_depends(struct ctx *c, const struct rev_config *cfg)
{
	char kp[KP_LEN];

	for (int i = 0; i < cfg->n_services; i++) {
		const struct service_config *sv = &cfg->services[i];

		for (int d = 0; d < sv->n_deps; d++) {
			kp_fmt(kp, sizeof(kp), "services.%s.depends_on[%d]", sv->name, d);
			if (!strcmp(sv->depends_on[d], sv->name))
				return fail(c, kp,
					    "dependency cycle: %s -> %s (a service cannot depend "
					    "on itself)",
					    sv->name, sv->name);
			if (service_index(cfg, sv->depends_on[d]) < 0) {
				char names[256];
				size_t o = 0;

				names[0] = '\0';
				for (int j = 0; j < cfg->n_services && o < sizeof(names); j++)
					o += snprintf(names + o, sizeof(names) - o, "%s%s",
						      j ? ", " : "", cfg->services[j].name);
				return fail(c, kp, "no service named \"%s\" (services: %s)",
					    sv->depends_on[d], names);
			}
		}
	}
	return 0;
}

enum { WHITE, GREY, BLACK };

/* Depth-first walk in config order. On a back edge, stack[] holds the path that closes the cycle:
 * the message spells it out so the user sees which edge to drop. */
static int dfs(struct ctx *c, const struct rev_config *cfg, int v, char *color, int *stack,
	       int depth, int *order, int *n_order)
{
	const struct service_config *sv = &cfg->services[v];

	color[v] = GREY;
	stack[depth] = v;
	for (int d = 0; d < sv->n_deps; d++) {
		int u = service_index(cfg, sv->depends_on[d]);
		int ret;

		if (u < 0)
			return -EINVAL;
		if (color[u] == GREY) {
			char kp[KP_LEN], cyc[512];
			size_t o = 0;
			int from = depth;

			if (!c)
				return -ELOOP;
			while (from > 0 && stack[from] != u)
				from--;
			cyc[0] = '\0';
			for (int i = from; i <= depth && o < sizeof(cyc); i++)
				o += snprintf(cyc + o, sizeof(cyc) - o, "%s -> ",
					      cfg->services[stack[i]].name);
			if (o < sizeof(cyc))
				snprintf(cyc + o, sizeof(cyc) - o, "%s", cfg->services[u].name);
			kp_fmt(kp, sizeof(kp), "services.%s.depends_on[%d]", sv->name, d);
			fail(c, kp, "dependency cycle: %s (remove one of these dependencies)", cyc);
			return -ELOOP;
		}
		if (color[u] == WHITE &&
		    (ret = dfs(c, cfg, u, color, stack, depth + 1, order, n_order)))
			return ret;
	}
	color[v] = BLACK;
	if (order)
		order[(*n_order)++] = v;
	return 0;
}

static int topo(struct ctx *c, const struct rev_config *cfg, int *order)
{
	int n = cfg->n_services, n_order = 0, ret = 0;
	char *color;
	int *stack;

	if (n <= 0)
		return 0;
	color = calloc(n, sizeof(*color));
	stack = calloc(n, sizeof(*stack));
	if (!color || !stack) {
		ret = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n && !ret; i++)
		if (color[i] == WHITE)
			ret = dfs(c, cfg, i, color, stack, 0, order, &n_order);
out:
	free(color);
	free(stack);
	return ret;
}

static int check_ports(struct ctx *c, const struct rev_config *cfg)
{
	char kp[KP_LEN];

	for (int i = 0; i < cfg->n_services; i++) {
		const struct service_config *a = &cfg->services[i];

		if (!a->port)
			continue;
		for (int j = 0; j < i; j++) {
			if (cfg->services[j].port != a->port)
				continue;
			kp_fmt(kp, sizeof(kp), "services.%s.port", a->name);
			return fail(c, kp,
				    "%d is also the port of service \"%s\" (give each service its "
				    "own port)",
				    a->port, cfg->services[j].name);
		}
	}
	return 0;
}

static int parse_services(struct ctx *c, const cJSON *obj, struct rev_config *cfg)
{
	const cJSON *it, *o;
	int n, ret;

	if ((ret = get_obj(c, obj, "services")))
		return ret;
	n = cJSON_GetArraySize(obj);
	if (!n)
		return 0;
	cfg->services = calloc(n, sizeof(*cfg->services));
	if (!cfg->services)
		return -ENOMEM;
	cJSON_ArrayForEach(it, obj)
	{
		struct service_config *sv = &cfg->services[cfg->n_services];
		const char *name = it->string ? it->string : "";

		if (!valid_name(name)) {
			char shown[5 * 64 + 1], kp[KP_LEN];

			printable_name(name, shown, sizeof(shown));
			kp_fmt(kp, sizeof(kp), "services.%s", shown);
			return fail(c, kp,
				    "invalid service name \"%s\" (a name is 1 to %d letters, "
				    "digits, '_' or '-', not starting with '-'; it becomes a file "
				    "and cgroup name)",
				    shown, NAME_MAX_LEN);
		}
		for (o = obj->child; o != it; o = o->next)
			if (!strcmp(o->string, name))
				return fail(
				    c, "services",
				    "service \"%s\" is defined twice (rename or merge them)", name);
		/* counted before it is filled so that config_free() sees it on any error */
		cfg->n_services++;
		service_defaults(sv);
		if (!(sv->name = strdup(name)))
			return -ENOMEM;
		if ((ret = parse_service(c, it, cfg, sv)))
			return ret;
	}
	return 0;
}

enum { T_SERVICES, T_MONITORING, T_CONFLICT, T_LOG, T_CONTROL, T_METRICS, T_N };
static const char *const top_keys[] = {"services", "monitoring", "conflict_resolution",
				       "log",	   "control",	 "metrics"};

static int set_defaults(struct rev_config *cfg)
{
	cfg->monitoring.enabled = true;
	cfg->monitoring.zombie_grace_ms = 1000;
	cfg->monitoring.auto_resolve_conflicts = true;
	cfg->conflict.allow_port_migration = true;
	cfg->conflict.preserve_external_processes = true;
	cfg->log.max_bytes = 10485760;
	cfg->log.keep = 5;
	cfg->log.compress = true;
	if (!(cfg->conflict.strategy = strdup("intelligent")) ||
	    !(cfg->control.socket = strdup(CONFIG_DEFAULT_CONTROL_SOCKET)) ||
	    !(cfg->metrics.listen = strdup("127.0.0.1:9464")) ||
	    asprintf(&cfg->log.path, "%s/logs/events.jsonl",
		     strcmp(cfg->dir, "/") ? cfg->dir : "") < 0) {
		cfg->log.path = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Where cJSON gave up, as line:col and a few characters, with a guess at the usual mistakes. */
static int malformed(struct ctx *c, const char *text, const char *at)
{
	int line = 1, col = 1;
	char near[24];
	const char *hint = "";
	const char *p;
	size_t n = 0;

	if (!at || at < text || at > text + strlen(text))
		at = text;
	/* cJSON reports one past the character where an object key should have started (it has
	 * already stepped over the opening quote it expected): step back for those. */
	if (at > text && !strchr(" \t\r\n\"", at[-1])) {
		const char *b = at - 1;

		while (b > text && strchr(" \t\r\n", b[-1]))
			b--;
		if (b > text && (b[-1] == '{' || b[-1] == ','))
			at--;
	}
	if (!text[strspn(text, " \t\r\n")]) {
		snprintf(c->err, c->errlen,
			 "%s:1:1: malformed JSON: the file is empty (write an object, e.g. "
			 "{\"services\": {}})",
			 c->path);
		return -EINVAL;
	}
	for (p = text; p < at; p++) {
		if (*p == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)*p & 0xc0) != 0x80) {
			col++; /* count characters, not UTF-8 continuation bytes */
		}
	}
	for (p = at; *p && *p != '\n' && n < 16; p++)
		near[n++] = ((unsigned char)*p < ' ') ? ' ' : *p;
	if (((unsigned char)*p & 0xc0) == 0x80) {
		/* do not cut a UTF-8 character in half */
		while (n > 0 && ((unsigned char)near[n - 1] & 0xc0) == 0x80)
			n--;
		if (n > 0 && ((unsigned char)near[n - 1] & 0xc0) == 0xc0)
			n--;
	}
	near[n] = '\0';

	if (!*at) {
		hint = " (unexpected end of file: a '}' or ']' missing?)";
	} else if (!strncmp(at, "//", 2) || !strncmp(at, "/*", 2) || *at == '#') {
		hint = " (JSON has no comments: remove them)";
	} else if (*at == '\'') {
		hint = " (JSON strings use double quotes)";
	} else if (*at == '}' || *at == ']') {
		const char *b = at;

		while (b > text && strchr(" \t\r\n", b[-1]))
			b--;
		if (b > text && b[-1] == ',')
			hint = " (trailing comma before it: remove the comma)";
	}
	snprintf(c->err, c->errlen, "%s:%d:%d: malformed JSON near '%s'%s", c->path, line, col,
		 near, hint);
	return -EINVAL;
}

static int parse(struct ctx *c, const char *text, struct rev_config *cfg)
{
	const cJSON *it, *sect[T_N] = {0};
	const char *end = NULL;
	char kp[KP_LEN];
	unsigned seen = 0;
	cJSON *root;
	int k, ret;

	if ((ret = config_dir(cfg->path, &cfg->dir))) {
		snprintf(c->err, c->errlen, "%s: cannot find its directory: %s", c->path,
			 strerror(-ret));
		return ret;
	}
	if ((ret = set_defaults(cfg)))
		return ret;

	/* require_null_terminated: trailing text after the object is an error, not ignored */
	root = cJSON_ParseWithOpts(text, &end, 1);
	if (!root)
		return malformed(c, text, end);
	if (!cJSON_IsObject(root)) {
		char got[64];

		describe(root, got, sizeof(got));
		ret = fail(c, NULL,
			   "the top level must be an object ({\"services\": {...}}), got %s", got);
		goto out;
	}
	for (it = root->child; it; it = it->next) {
		k = key_index(c, NULL, it, top_keys, T_N, &seen, kp, sizeof(kp));
		if (k < 0) {
			ret = k;
			goto out;
		}
		sect[k] = it;
	}
	/* log first: services' default log files live next to the event log */
	if ((sect[T_LOG] && (ret = parse_log(c, sect[T_LOG], cfg))) ||
	    (sect[T_CONTROL] && (ret = parse_control(c, sect[T_CONTROL], cfg))) ||
	    (sect[T_METRICS] && (ret = parse_metrics(c, sect[T_METRICS], cfg))) ||
	    (sect[T_MONITORING] && (ret = parse_monitoring(c, sect[T_MONITORING], cfg))) ||
	    (sect[T_CONFLICT] && (ret = parse_conflict(c, sect[T_CONFLICT], cfg))) ||
	    (sect[T_SERVICES] && (ret = parse_services(c, sect[T_SERVICES], cfg))))
		goto out;
	for (int i = 0; i < cfg->n_services; i++)
		if ((ret = service_finish(cfg, &cfg->services[i])))
			goto out;
	if (!(ret = check_ports(c, cfg)) && !(ret = check_port_refs(c, cfg)) &&
	    !(ret = check_depends(c, cfg)))
		ret = topo(c, cfg, NULL);
out:
	cJSON_Delete(root);
	if (ret == -ELOOP)
		ret = -EINVAL;
	return ret;
}

int config_parse(const char *text, const char *path, struct rev_config *cfg, char *err,
		 size_t errlen)
{
	struct ctx c = {.path = path ? path : "<config>", .err = err, .errlen = errlen};
	int ret;

	if (!cfg)
		return -EINVAL;
	memset(cfg, 0, sizeof(*cfg));
	if (err && errlen)
		err[0] = '\0';
	if (!text)
		return -EINVAL;
	if (!(cfg->path = strdup(c.path)))
		return -ENOMEM;
	ret = parse(&c, text, cfg);
	if (ret == -ENOMEM && err && errlen)
		snprintf(err, errlen, "%s: out of memory", c.path);
	if (ret)
		config_free(cfg);
	return ret;
}

char *config_control_socket(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL, *out = NULL, *dir = NULL;
	size_t n = 0;
	cJSON *root;
	const cJSON *sock;

	if (!f)
		return NULL;
	if (getdelim(&text, &n, 0, f) < 0) { /* the whole file: it has no NUL */
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	root = cJSON_Parse(text);
	free(text);
	if (!root)
		return NULL;
	sock = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "control"),
						"socket");
	if (!cJSON_IsString(sock))
		out = strdup(CONFIG_DEFAULT_CONTROL_SOCKET);
	else if (sock->valuestring[0] == '/')
		out = strdup(sock->valuestring);
	else if (config_dir(path, &dir) == 0 && asprintf(&out, "%s/%s", dir, sock->valuestring) < 0)
		out = NULL;
	free(dir);
	cJSON_Delete(root);
	return out;
}

static int load(const char *path, bool regular_only, struct rev_config *cfg, char *err,
		size_t errlen)
{
	size_t len = 0, cap = 65536;
	char *buf = NULL, *nb;
	struct stat st;
	int fd, ret;

	if (!cfg || !path)
		return -EINVAL;
	memset(cfg, 0, sizeof(*cfg));
	fd = open(path, O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0));
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	if (regular_only && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
		close(fd);
		snprintf(err, errlen,
			 "%s: not a regular file (a reload reads only regular files: it must not "
			 "wait on a FIFO)",
			 path);
		return -EINVAL;
	}
	/* read to EOF rather than trust st_size: the path may be a pipe or /proc file */
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap || !buf) {
			if (buf)
				cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
		if (len > CONFIG_MAX_BYTES) {
			close(fd);
			free(buf);
			snprintf(err, errlen,
				 "%s: larger than %d MiB; is this the right file? (pass another "
				 "with -c FILE)",
				 path, CONFIG_MAX_BYTES >> 20);
			return -EFBIG;
		}
	}
	close(fd);
	fd = -1;
	buf[len] = '\0';
	if (strlen(buf) != len) {
		free(buf);
		snprintf(err, errlen, "%s: contains a NUL byte; is this the right file?", path);
		return -EINVAL;
	}
	ret = config_parse(buf, path, cfg, err, errlen);
	free(buf);
	return ret;

fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	if (err && errlen)
		snprintf(err, errlen, "%s: cannot read: %s%s", path, strerror(-ret),
			 ret == -ENOENT	  ? " (pass another file with -c FILE)"
			 : ret == -EACCES ? " (run as root or fix its permissions)"
					  : "");
	return ret;
}

int config_check_files(const struct rev_config *cfg, char *err, size_t errlen)
{
	struct ctx c = {.path = cfg->path ? cfg->path : "<config>", .err = err, .errlen = errlen};
	char kp[KP_LEN];
	int ret = check_file_kind(&c, "log.path", cfg->log.path, 0, false);

	for (int i = 0; i < cfg->n_services && !ret; i++) {
		const struct service_config *sv = &cfg->services[i];

		kp_fmt(kp, sizeof(kp), "services.%s.log_file", sv->name);
		ret = check_file_kind(&c, kp, sv->log_file, 0, true);
		kp_fmt(kp, sizeof(kp), "services.%s.env_file", sv->name);
		if (!ret && sv->env_file)
			ret = check_file_kind(&c, kp, sv->env_file, CONFIG_ENV_FILE_MAX, false);
	}
	return ret;
}

int config_load(const char *path, struct rev_config *cfg, char *err, size_t errlen)
{
	return load(path, false, cfg, err, errlen);
}

int config_reload(const char *path, struct rev_config *cfg, char *err, size_t errlen)
{
	return load(path, true, cfg, err, errlen);
}

const char *config_default_path(void)
{
	return access(CONFIG_DEFAULT_PATH, F_OK) == 0 ? CONFIG_DEFAULT_PATH : CONFIG_FALLBACK_PATH;
}

const struct service_config *config_service(const struct rev_config *cfg, const char *name)
{
	int i;

	if (!cfg || !name)
		return NULL;
	i = service_index(cfg, name);
	return i < 0 ? NULL : &cfg->services[i];
}

int config_start_order(const struct rev_config *cfg, int *order)
{
	if (!cfg || (cfg->n_services > 0 && !order))
		return -EINVAL;
	return topo(NULL, cfg, order);
}

static void free_strv(char **v, int n)
{
	if (!v)
		return;
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void config_free(struct rev_config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; cfg->services && i < cfg->n_services; i++) {
		struct service_config *sv = &cfg->services[i];

		free(sv->name);
		free(sv->command);
		free(sv->cwd);
		free_strv(sv->env, sv->n_env);
		free(sv->env_file);
		free(sv->alt_ports);
		free_strv(sv->depends_on, sv->n_deps);
		free(sv->health.http);
		free(sv->log_file);
		free(sv->stderr_file);
		free(sv->user);
		free(sv->group);
		free(sv->home);
		free_strv(sv->part_of, sv->n_part_of);
		free(sv->fingerprint);
	}
	free(cfg->services);
	free(cfg->path);
	free(cfg->dir);
	free(cfg->conflict.strategy);
	free(cfg->log.path);
	free(cfg->control.socket);
	free(cfg->metrics.listen);
	free(cfg->metrics.token_file);
	memset(cfg, 0, sizeof(*cfg));
}
