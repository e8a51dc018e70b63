/*
 * trailhound: the command-line front end. Picks the subcommand from
 * th_commands (one place to add one) and hands it the rest of the arguments;
 * the commands (src/cmd_*.c) parse their options and call into the core
 * library, where all the work happens.
 */
#include "cmd.h"
#include "trailhound/config.h"
#include "trailhound/common.h"
#include "trailhound/watchdog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const struct th_command th_commands[] = {
	{"scan", "[FILE|DIR...|-]  run the detector over CloudTrail files or an S3 archive",
	 th_cmd_scan},
	{"inspect", "--state DIR  show what the detector knows (keys, roles, accounts)",
	 th_cmd_inspect},
	{"run", "-c FILE        the Kafka stream worker (consumer group, exactly-once)",
	 th_cmd_run},
	{"produce", "FILE...    publish CloudTrail files to Kafka, one message per event",
	 th_cmd_produce},
	{"bridge", "-c FILE     CloudTrail from S3 (SQS notifications, --backfill) to Kafka",
	 th_cmd_bridge},
	{"variations", "[--json] the detection variations (names, severities, kinds)",
	 th_cmd_variations},
	{NULL, NULL, NULL},
};

volatile sig_atomic_t th_cmd_running = 1;

static void stop(int sig)
{
	(void)sig;
	th_cmd_running = 0;
	/* starts the stop limit's count (run, bridge: stop_timeout) */
	th_watchdog_stop_requested();
}

void th_cmd_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int th_cmd_exit_code(int err)
{
	if (err == 0)
		return TH_EXIT_OK;
	return err == TH_ECONFIG ? TH_EXIT_CONFIG : TH_EXIT_RUNTIME;
}

int th_cmd_parse_count(const char *cmd, const char *opt, const char *v, uint64_t min,
		       uint64_t max, uint64_t *out)
{
	uint64_t n = 0;
	const char *q = v;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (n > (UINT64_MAX - 9) / 10)
			break;
		n = n * 10 + (uint64_t)(*q - '0');
	}
	if (q == v || *q || n < min || n > max) {
		fprintf(stderr,
			"trailhound %s: %s \"%s\": want a whole number in [%" PRIu64 ", %" PRIu64
			"]\n",
			cmd, opt, v, min, max);
		return TH_EXIT_USAGE;
	}
	*out = n;
	return TH_EXIT_OK;
}

extern char **environ;

int th_cmd_apply_settings(struct th_config *cf, char *const *sets, int n_sets, const char *cmd)
{
	char errstr[512];
	if (th_config_apply_overrides(cf, environ, sets, n_sets, errstr, sizeof(errstr)) == 0)
		return TH_EXIT_OK;
	fprintf(stderr, "trailhound %s: %s\n", cmd, errstr);
	return TH_EXIT_CONFIG;
}

static void usage(FILE *out)
{
	fprintf(out, "Usage: trailhound <command> [options]\n"
		     "\n"
		     "Catches stolen AWS Lambda credentials in CloudTrail.\n"
		     "\n"
		     "Commands:\n");
	for (const struct th_command *c = th_commands; c->name; c++)
		fprintf(out, "  %s %s\n", c->name, c->synopsis);
	fprintf(out, "\n"
		     "  trailhound <command> --help   options of a command\n"
		     "  trailhound --version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return TH_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("trailhound %s\n", TH_VERSION);
		return 0;
	}
	for (const struct th_command *c = th_commands; c->name; c++)
		if (strcmp(c->name, cmd) == 0)
			return c->main(argc - 1, argv + 1);
	fprintf(stderr, "trailhound: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return TH_EXIT_USAGE;
}
