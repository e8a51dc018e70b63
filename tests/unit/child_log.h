/*
 * For unit tests that run their case in a forked child because it may end
 * the process (the hang watchdog's _exit): wait for the child, bounded, and
 * read the log its stderr went to. Header-only: each test is its own
 * executable.
 */
#ifndef TH_TEST_CHILD_LOG_H
#define TH_TEST_CHILD_LOG_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Wait up to @p timeout_s for child @p pid (then SIGKILL it), read its log
 * file @p path into @p log (NUL-terminated, printed to our stderr) and
 * remove it. @returns whether the child ended by itself; *status is its
 * waitpid() status. */
static bool child_wait_and_read_log(pid_t pid, int timeout_s, int *status, const char *path,
				    char *log, size_t log_size)
{
	pid_t done = 0;
	for (int i = 0; i < timeout_s * 10 && !(done = waitpid(pid, status, WNOHANG)); i++)
		usleep(100000);
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, status, 0);
	}
	size_t n = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		n = fread(log, 1, log_size - 1, f);
		fclose(f);
	}
	log[n] = '\0';
	unlink(path);
	fprintf(stderr, "---- the child's log ----\n%s---- end ----\n", log);
	return done != 0;
}

#endif
