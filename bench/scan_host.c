// SPDX-License-Identifier: MIT
/* The busy host of bench/scan: PROCS processes holding FDS open fds each (pipes and /dev/null),
 * the first ones also a TCP listener on 127.0.0.1 at the ports given on the command line, the last
 * UDP ones (-u UDP) also a UDP socket bound on 127.0.0.1 at a port the kernel picks.
 *
 * usage: scan_host [-u UDP] PROCS FDS PORT...
 * Prints "L PID PORT" per listener (PORT is what it got: the asked one, or a kernel-chosen one when
 * that was taken), "U PID PORT" per UDP socket, "P PID" per other process, then "ready". Holds everything until stdin reaches
 * EOF (the driver closed it or died), then SIGKILLs its own children by pid, reaps them and exits.
 * The children also die with it (PR_SET_PDEATHSIG), so nothing outlives the benchmark. */
#define _GNU_SOURCE /* close_range */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int udp_on(int *got)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		return -1;
	*got = ntohs(a.sin_port);
	return s;
}

static int listen_on(int port, int *got)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	if (bind(s, (struct sockaddr *)&a, sizeof(a))) {
		a.sin_port = 0; /* taken by someone else: any free port will do */
		if (bind(s, (struct sockaddr *)&a, sizeof(a)))
			return -1;
	}
	if (listen(s, 16) || getsockname(s, (struct sockaddr *)&a, &len))
		return -1;
	*got = ntohs(a.sin_port);
	return s;
}

/* In the child: fill the fd table up to fds open fds (0, 1, 2 and the listener included). */
static int fill_fds(int fds)
{
	int open_now = 4; /* 0, 1, 2 and the report pipe (3) */
	int fd;

	for (int i = 0; i < 16 && open_now + 2 <= fds; i++) {
		int p[2];

		if (pipe(p))
			return -1;
		open_now += 2;
	}
	while (open_now < fds) {
		fd = open("/dev/null", O_RDONLY);
		if (fd < 0)
			return -1;
		open_now++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int procs, fds, n_ports, n_udp = 0, rep[2];
	pid_t *kids;
	char line[64];
	int ok = 1;

	if (argc > 2 && !strcmp(argv[1], "-u")) {
		n_udp = atoi(argv[2]);
		argc -= 2;
		argv += 2;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: scan_host [-u UDP] PROCS FDS PORT...\n");
		return 2;
	}
	procs = atoi(argv[1]);
	fds = atoi(argv[2]);
	n_ports = argc - 3;
	if (procs <= 0 || fds < 6 || n_ports > procs || n_udp < 0 || n_udp > procs) {
		fprintf(stderr, "scan_host: need PROCS > 0, FDS >= 6, at most PROCS ports and UDP\n");
		return 2;
	}
	kids = calloc(procs, sizeof(*kids));
	if (!kids || pipe(rep))
		return 1;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	for (int i = 0; i < procs; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "scan_host: fork %d: %s\n", i, strerror(errno));
			ok = 0;
			break;
		}
		if (pid == 0) {
			int got = 0, lfd = -1, ufd = -1, ugot = 0;
			char msg[64];
			int n;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(1);
			/* exactly 0, 1, 2 and the report pipe at 3: nothing else inherited counts
			 */
			if (dup2(rep[1], 3) < 0 || close_range(4, ~0U, 0))
				_exit(1);
			rep[1] = 3;
			/* stdin stays the driver's pipe: close it so only the parent sees EOF */
			n = open("/dev/null", O_RDONLY);
			if (n < 0 || dup2(n, 0) < 0 || close(n))
				_exit(1);
			if (i < n_ports) {
				lfd = listen_on(atoi(argv[3 + i]), &got);
				if (lfd < 0)
					_exit(1);
			}
			if (i >= procs - n_udp && (ufd = udp_on(&ugot)) < 0)
				_exit(1);
			/* the sockets are among the fds; the report pipe is closed after reporting
			 */
			if (fill_fds(fds - (lfd >= 0) - (ufd >= 0)))
				_exit(1);
			n = lfd >= 0 ? snprintf(msg, sizeof(msg), "L %d %d\n", getpid(), got)
				     : snprintf(msg, sizeof(msg), "P %d\n", getpid());
			if (ufd >= 0)
				n += snprintf(msg + n, sizeof(msg) - n, "U %d %d\n", getpid(), ugot);
			if (write(rep[1], msg, n) != n)
				_exit(1);
			close(rep[1]);
			/* replace the report pipe's slot so the count stays FDS */
			if (open("/dev/null", O_RDONLY) < 0)
				_exit(1);
			for (;;)
				pause();
		}
		kids[i] = pid;
	}
	close(rep[1]);
	if (ok) {
		/* one line per child (each write is atomic, < PIPE_BUF) */
		FILE *r = fdopen(rep[0], "r");
		int seen = 0;

		while (r && seen < procs && fgets(line, sizeof(line), r)) {
			fputs(line, stdout);
			seen += line[0] != 'U'; /* a UDP line comes with its process's own line */
		}
		if (seen < procs) {
			fprintf(stderr, "scan_host: only %d of %d processes got ready\n", seen,
				procs);
			ok = 0;
		}
	}
	if (ok) {
		puts("ready");
		fflush(stdout);
		while (fgets(line, sizeof(line), stdin))
			; /* hold until EOF */
	}
	for (int i = 0; i < procs; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
	for (int i = 0; i < procs; i++)
		if (kids[i] > 0)
			waitpid(kids[i], NULL, 0);
	return ok ? 0 : 1;
}
