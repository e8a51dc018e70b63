/*
 * The table of subcommands (one place to add one).
 */
#include "trailhound/cli.h"

#include <stddef.h>

const struct th_command th_commands[] = {
	{"scan", th_cmd_scan},
	{"inspect", th_cmd_inspect},
	{"run", th_cmd_run},
	{"produce", th_cmd_produce},
	{"bridge", th_cmd_bridge},
	{NULL, NULL},
};
