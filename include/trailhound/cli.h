/*
 * Subcommands of the trailhound binary. Each lives in the core library (so
 * tests can drive it) and is listed once in th_commands (src/cli.c).
 *
 * Exit codes, shared by every command:
 *   0  success (scan: no alerts)       1  scan: alerts were raised
 *   2  usage error                     3  input error (a file could not be read)
 *   4  configuration or reference-data error
 *   5  runtime failure (state store, Kafka); the supervisor should restart
 */
#ifndef TRAILHOUND_CLI_H
#define TRAILHOUND_CLI_H

#ifdef __cplusplus
extern "C" {
#endif


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
	int (*main)(int argc, char **argv);
};

extern const struct th_command th_commands[];

int th_cmd_scan(int argc, char **argv);
int th_cmd_inspect(int argc, char **argv);
int th_cmd_run(int argc, char **argv);
int th_cmd_produce(int argc, char **argv);
int th_cmd_bridge(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
