/*
 * `trailhound run`: the Kafka stream worker (src/worker.c) behind its
 * command line: options and config in, signals to a stop flag, the worker's
 * TH_E* result out as an exit code.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "trailhound/check.h"
#include "trailhound/config.h"
#include "trailhound/log.h"
#include "trailhound/watchdog.h"
#include "trailhound/worker.h"

static void run_usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound run -c FILE [options]\n"
		"\n"
		"The stream worker: a member of the consumer group that reads CloudTrail topics,\n"
		"runs the detector per partition (state in LMDB, changelog in Kafka) and\n"
		"produces Avro alerts with exactly-once semantics.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE        the configuration file (see --example-config)\n"
		"  -s, --set KEY=VALUE      override one setting (kafka.* pass to librdkafka)\n"
		"  --exit-when-idle MS      exit once caught up and idle for MS milliseconds\n"
		"  --drain                  with --exit-when-idle: first decide the uses still held\n"
		"                           for late attribution, as `scan` does at end of input\n"
		"  --max-attempts N         dead-letter a message (processing_failed) after its\n"
		"                           processing failed N times in a row (default 3)\n"
		"  --check-config           validate without consuming (brokers, topics, changelog,\n"
		"                           state_dir, reference data), print the effective\n"
		"                           configuration with secrets masked; exit 0 or 4\n"
		"  --help-config            the settings with defaults and descriptions\n"
		"  --example-config         print a complete example configuration, with the\n"
		"                           values of any --set in place\n"
		"  -v, --verbose            debug logging\n"
		"  -h, --help               this text\n"
		"\n"
		"Settings come from the file, then TRAILHOUND_<SETTING> environment variables\n"
		"(upper case, '.' as \"__\": TRAILHOUND_KAFKA__SASL__PASSWORD), then --set.\n"
		"\n"
		"Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, also during the start or a\n"
		"restore), 2 usage, 4 configuration (a missing ACL included), 5 runtime failure\n"
		"(fenced by a newer instance, fatal Kafka or consumer group error, offsets\n"
		"unreadable for a rewind, state store, a librdkafka call hung far past its\n"
		"timeout, a stop not finished within stop_timeout): restart it\n"
		"(Restart=on-failure).\n");
}

int th_cmd_run(int argc, char **argv)
{
	enum { O_IDLE = 256, O_DRAIN, O_ATTEMPTS, O_HELPCONF, O_EXAMPLE, O_CHECK };
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"exit-when-idle", required_argument, NULL, O_IDLE},
		{"drain", no_argument, NULL, O_DRAIN},
		{"max-attempts", required_argument, NULL, O_ATTEMPTS},
		{"check-config", no_argument, NULL, O_CHECK},
		{"help-config", no_argument, NULL, O_HELPCONF},
		{"example-config", no_argument, NULL, O_EXAMPLE},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct th_config cf;
	struct th_worker_opts wo = {0};
	char errstr[512];
	int c, rc = 0, ret = TH_EXIT_OK, n_sets = 0;
	bool check = false, verbose = false, example = false;
	uint64_t n;
	char **sets = calloc((size_t)argc + 1, sizeof(*sets));

	th_config_init(&cf);
	if (!sets) {
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': rc = th_config_load(&cf, optarg, errstr, sizeof(errstr)); break;
		case 's': sets[n_sets++] = optarg; break; /* applied after the environment */
		case O_CHECK: check = true; break;
		case O_IDLE:
			if ((ret = th_cmd_parse_count("run", "--exit-when-idle", optarg, 0, TH_CMD_IDLE_MAX_MS,
						      &n)))
				goto out;
			/* The worker reads 0 as "never exit"; 0 ms of idleness
			 * asked for here means exit as soon as caught up. */
			wo.exit_when_idle_ms = n ? (long)n : 1;
			break;
		case O_DRAIN: wo.drain = true; break;
		case O_ATTEMPTS:
			if ((ret = th_cmd_parse_count("run", "--max-attempts", optarg, 1, 1000, &n)))
				goto out;
			wo.max_attempts = (int)n;
			break;
		case O_HELPCONF: th_config_help(stdout); goto out;
		case O_EXAMPLE: example = true; break;
		case 'v': verbose = true; break;
		case 'h': run_usage(stdout); goto out;
		default: run_usage(stderr); ret = TH_EXIT_USAGE; goto out;
		}
		if (rc) {
			fprintf(stderr, "trailhound run: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
	}
	if (optind < argc) {
		run_usage(stderr);
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (example) {
		if (th_config_example(stdout, sets, n_sets, errstr, sizeof(errstr))) {
			fprintf(stderr, "trailhound run: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
		}
		goto out;
	}
	/* alone it would do nothing: a worker that goes on decides held uses
	 * as later events and hold expiries arrive */
	if (wo.drain && !wo.exit_when_idle_ms) {
		fprintf(stderr, "trailhound run: --drain works only with --exit-when-idle MS\n");
		ret = TH_EXIT_USAGE;
		goto out;
	}
	/* file < TRAILHOUND_* environment < --set */
	if ((ret = th_cmd_apply_settings(&cf, sets, n_sets, "run")))
		goto out;
	if (verbose)
		th_log_level = TH_LOG_DEBUG;
	if (check) {
		ret = th_cmd_exit_code(th_config_check(&cf, stdout));
		goto out;
	}
	th_cmd_install_signals();
	/* a librdkafka call hung past its timeout ends the process with 5, the
	 * code that asks for a restart (watchdog.h) */
	th_watchdog_set_stop_limit((long)cf.stop_timeout_ms);
	if (th_watchdog_start(TH_EXIT_RUNTIME))
		th_log_warn("run", "cannot start the hang watchdog: a hung librdkafka call would "
				   "stop the worker for good");
	ret = th_cmd_exit_code(th_worker_run(&cf, &wo, &th_cmd_running));
	th_watchdog_stop();
out:
	free(sets);
	th_config_free(&cf);
	return ret;
}
