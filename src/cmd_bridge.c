/*
 * `trailhound bridge`: the command line of the S3-to-Kafka bridge
 * (src/bridge.c): settings from the file, TRAILHOUND_* variables and --set,
 * as `run` reads them.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "trailhound/bridge.h"
#include "trailhound/config.h"
#include "trailhound/log.h"
#include "trailhound/watchdog.h"

static void bridge_usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound bridge -c FILE [options]\n"
		"       trailhound bridge -c FILE --backfill s3://BUCKET/PREFIX [--since 30d]\n"
		"\n"
		"CloudTrail from S3 to Kafka, exactly once per file. Reads the SQS queue\n"
		"bridge_queue_url (S3 event notifications, the same via SNS or EventBridge, or\n"
		"CloudTrail's SNS messages), fetches each log file with a signed S3 GET and\n"
		"publishes one message per event to the first input_topics entry, keyed by\n"
		"the credential owner's account (murmur2, as `produce`). A file's events and\n"
		"its marker in bridge_ledger_topic commit in one transaction; the SQS message\n"
		"is deleted after the commit. Objects that are not CloudTrail log files are\n"
		"skipped.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE        the configuration file (aws_*, bridge_* settings)\n"
		"  -s, --set KEY=VALUE      override one setting\n"
		"  --backfill s3://B/P      list the archive under P (ListObjectsV2) and publish\n"
		"                           it in delivery order, then exit; files the ledger\n"
		"                           knows are skipped, so it is safe to repeat\n"
		"  --since DURATION         with --backfill: files delivered within this period\n"
		"                           (30d, 12h, 90m); default all\n"
		"  --exit-when-idle MS      exit after MS milliseconds without a message\n"
		"  --wait S                 SQS long-poll wait, 0..20 seconds (default 20)\n"
		"  -v, --verbose            debug logging\n"
		"  -h, --help               this text\n"
		"\n"
		"Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], web\n"
		"identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), ~/.aws/credentials\n"
		"(AWS_PROFILE), the container endpoint, EC2 IMDSv2.\n"
		"\n"
		"Exit codes: 0 stopped, 2 usage, 3 backfill: a file could not be read,\n"
		"4 configuration, AWS refused the credentials or a Kafka ACL is missing,\n"
		"5 Kafka failure, or a stop not finished within stop_timeout.\n");
}

static int parse_since(const char *s, int64_t *ms)
{
	char *end;
	long long n = strtoll(s, &end, 10);
	int64_t unit;
	if (end == s || n < 0)
		return -1;
	if (strcmp(end, "d") == 0)
		unit = 86400000;
	else if (strcmp(end, "h") == 0)
		unit = 3600000;
	else if (strcmp(end, "m") == 0)
		unit = 60000;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		unit = 1000;
	else
		return -1;
	if (n > 36500LL * 86400000 / unit)
		return -1;
	*ms = (int64_t)n * unit;
	return 0;
}

int th_cmd_bridge(int argc, char **argv)
{
	enum { O_BACKFILL = 256, O_SINCE, O_IDLE, O_WAIT };
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"backfill", required_argument, NULL, O_BACKFILL},
		{"since", required_argument, NULL, O_SINCE},
		{"exit-when-idle", required_argument, NULL, O_IDLE},
		{"wait", required_argument, NULL, O_WAIT},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct th_config cf;
	struct th_bridge_opts bo = {0};
	char errstr[512];
	int c, rc = 0, ret = TH_EXIT_OK, n_sets = 0;
	bool verbose = false;
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
		case O_BACKFILL: bo.backfill = optarg; break;
		case O_SINCE:
			if (parse_since(optarg, &bo.since_ms)) {
				fprintf(stderr, "trailhound bridge: --since: want e.g. 30d, got '%s'\n",
					optarg);
				ret = TH_EXIT_USAGE;
				goto out;
			}
			break;
		case O_IDLE:
			if ((ret = th_cmd_parse_count("bridge", "--exit-when-idle", optarg, 0,
						      TH_CMD_IDLE_MAX_MS, &n)))
				goto out;
			/* the bridge reads 0 as "never exit"; 0 ms asked for
			 * here means exit at the first poll without a message */
			bo.exit_when_idle_ms = n ? (long)n : 1;
			break;
		case O_WAIT:
			if ((ret = th_cmd_parse_count("bridge", "--wait", optarg, 0, 20, &n)))
				goto out;
			/* 0 means "default" in the options */
			bo.wait_s = n ? (int)n : -1;
			break;
		case 'v': verbose = true; break;
		case 'h': bridge_usage(stdout); goto out;
		default: bridge_usage(stderr); ret = TH_EXIT_USAGE; goto out;
		}
		if (rc) {
			fprintf(stderr, "trailhound bridge: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
	}
	if (optind < argc || (bo.since_ms && !bo.backfill)) {
		bridge_usage(stderr);
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if ((ret = th_cmd_apply_settings(&cf, sets, n_sets, "bridge")))
		goto out;
	if (verbose)
		th_log_level = TH_LOG_DEBUG;
	th_cmd_install_signals();
	/* the bridge's calls are bounded by their own timeouts; the watchdog
	 * bounds its stop as a whole (stop_timeout) */
	th_watchdog_set_stop_limit((long)cf.stop_timeout_ms);
	if (th_watchdog_start(TH_EXIT_RUNTIME))
		th_log_warn("bridge", "cannot start the watchdog: a stop is not bounded by "
				      "stop_timeout");
	rc = th_bridge_run(&cf, &bo, &th_cmd_running, NULL);
	th_watchdog_stop();
	ret = rc == TH_EIO ? TH_EXIT_INPUT : rc == TH_EINVAL ? TH_EXIT_USAGE : th_cmd_exit_code(rc);
out:
	free(sets);
	th_config_free(&cf);
	return ret;
}
