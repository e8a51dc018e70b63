/*
 * trailhound: the command-line front end. Parses the subcommand and its
 * options and calls into the core; all work happens in the library.
 */
#include "trailhound/cli.h"
#include "trailhound/common.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound <command> [options]\n"
		"\n"
		"Catches stolen AWS Lambda credentials in CloudTrail.\n"
		"\n"
		"Commands:\n"
		"  scan [FILE|DIR...|-]  run the detector over CloudTrail files or an S3 archive\n"
		"  inspect --state DIR  show what the detector knows (keys, roles, accounts)\n"
		"  run -c FILE        the Kafka stream worker (consumer group, exactly-once)\n"
		"  produce FILE...    publish CloudTrail files to Kafka, one message per event\n"
		"  bridge -c FILE     CloudTrail from S3 (SQS notifications, --backfill) to Kafka\n"
		"\n"
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
