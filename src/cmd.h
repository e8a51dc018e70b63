/*
 * Subcommands of the trailhound binary. They are part of the executable, not
 * of the core library `thcore`: each lives in its own src/cmd_<name>.c and is
 * listed once in th_commands (src/main.c). Not a public header.
 *
 * Exit codes, shared by every command. They exist only here: the core
 * returns 0 or a negative TH_E* code (common.h) and a command maps it with
 * th_cmd_exit_code().
 *   0  success (scan: no alerts)       1  scan: alerts were raised
 *   2  usage error                     3  input error (a file could not be read)
 *   4  configuration or reference-data error, or a permission (ACL) that a
 *      restart will not grant
 *   5  runtime failure (state store, Kafka); the supervisor should restart
 */
#ifndef TRAILHOUND_CMD_H
#define TRAILHOUND_CMD_H

#include <signal.h>
#include <stdint.h>

enum {
	TH_EXIT_OK = 0,
	TH_EXIT_ALERTS = 1,
	TH_EXIT_USAGE = 2,
	TH_EXIT_INPUT = 3,
	TH_EXIT_CONFIG = 4,
	TH_EXIT_RUNTIME = 5,
};

struct th_command {
	const char *name;
	const char *synopsis; /* one line for `trailhound --help` */
	int (*main)(int argc, char **argv);
};

extern const struct th_command th_commands[];

/* Cleared by SIGINT/SIGTERM once th_cmd_install_signals() ran. */
extern volatile sig_atomic_t th_cmd_running;
void th_cmd_install_signals(void);

/** @brief The exit code for a core error: TH_ECONFIG → 4, other errors → 5 (`scan` maps its
 * untrusted store, TH_EUNTRUSTED, to 4 itself; the worker rebuilds one from the changelog). */
int th_cmd_exit_code(int err);

/* The longest --exit-when-idle (run, bridge): a day, in milliseconds. */
#define TH_CMD_IDLE_MAX_MS 86400000u
/* An option's count: digits only (no sign, blanks or suffix), within
 * [min, max]; strtol alone takes "10abc" as 10 and "-1" as 2^64-1. Prints
 * "trailhound CMD: OPT "V": want a whole number in [MIN, MAX]" and returns
 * TH_EXIT_USAGE when it is not one, else TH_EXIT_OK. */
int th_cmd_parse_count(const char *cmd, const char *opt, const char *v, uint64_t min,
		       uint64_t max, uint64_t *out);

struct th_config;
/* The settings over a loaded file, in the documented order: TRAILHOUND_*
 * environment, then the --set values (collected while parsing options) in
 * command-line order, each applied once. Prints "trailhound CMD: why" and
 * returns TH_EXIT_CONFIG on an error, else TH_EXIT_OK. */
int th_cmd_apply_settings(struct th_config *cf, char *const *sets, int n_sets, const char *cmd);

int th_cmd_scan(int argc, char **argv);
int th_cmd_inspect(int argc, char **argv);
int th_cmd_run(int argc, char **argv);
int th_cmd_produce(int argc, char **argv);
int th_cmd_bridge(int argc, char **argv);
int th_cmd_variations(int argc, char **argv);

#endif
