/*
 * The table of subcommands (one place to add one).
 */
#include "trailhound/cli.h"

#include <stddef.h>

const struct th_command th_commands[] = {
	{"scan", th_cmd_scan},
	{NULL, NULL},
};
