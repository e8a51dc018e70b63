/*
 * `trailhound produce`: the backfill side of a CloudTrail-to-Kafka bridge:
 * files in, one message per event out, keyed by the credential owner's
 * account so an account's events share a partition.
 */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "trailhound/archive.h"
#include "trailhound/bridge.h"
#include "trailhound/config.h"
#include "trailhound/input.h"
#include "trailhound/log.h"

/* A full local queue waits this long for deliveries before trying again. */
#define QUEUE_FULL_POLL_MS 100
/* At the end, how long the last messages may take to be delivered. */
#define FLUSH_TIMEOUT_MS 60000

struct producer {
	rd_kafka_t *rk;
	const char *topic;
	uint64_t sent, rejected, failed, delivered, skipped;
	/* the last delivery error logged: each new one is logged once, the
	 * rest only counted (a broker that is down or a missing topic fails
	 * every event alike: one line per event buried the reason) */
	rd_kafka_resp_err_t logged_err;
	const char *input;
	/* an authentication or TLS failure: retrying cannot fix it, so stop */
	char conn_err[384];
};

static void produce_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct producer *p = opaque;
	(void)rk;
	if ((err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) &&
	    !p->conn_err[0]) {
		snprintf(p->conn_err, sizeof(p->conn_err), "%s", reason);
		th_cmd_running = 0;
	}
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct producer *p = opaque;
	(void)rk;
	if (m->err) {
		p->failed++;
		if (m->err != p->logged_err)
			th_log_err("produce", "delivery failed: %s (more events failing alike are "
					      "counted, not logged)", rd_kafka_err2str(m->err));
		p->logged_err = m->err;
	} else {
		p->delivered++;
	}
}

static int produce_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
			 uint64_t offset)
{
	struct producer *p = ctx;
	const char *acct = th_event_account(ev);
	(void)offset;
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
			p->rk, RD_KAFKA_V_TOPIC(p->topic),
			RD_KAFKA_V_KEY(acct, acct ? strlen(acct) : 0),
			RD_KAFKA_V_VALUE((void *)raw, raw_len),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			/* a broker that does not take events keeps the queue full
			 * until message.timeout.ms (5 min): Ctrl-C stops the wait */
			if (!th_cmd_running)
				return TH_EIO;
			rd_kafka_poll(p->rk, QUEUE_FULL_POLL_MS);
			if (p->conn_err[0])
				return TH_EKAFKA;
			continue;
		}
		if (err) {
			th_log_err("produce", "%s", rd_kafka_err2str(err));
			return TH_EKAFKA;
		}
		break;
	}
	p->sent++;
	rd_kafka_poll(p->rk, 0);
	return th_cmd_running ? 0 : TH_EIO;
}

static void produce_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			   size_t raw_len, uint64_t offset)
{
	struct producer *p = ctx;
	(void)raw;
	(void)raw_len;
	p->rejected++;
	th_log_warn("produce", "%s: byte %" PRIu64 ": rejected (%s): %s", p->input, offset,
		    th_reject_name(why), detail);
}

/* What an archive walk leaves out (digest and dot files, a file named twice,
 * unreadable files) is counted; what the user may want to fix is said. */
static void produce_skip(void *ctx, const char *path, enum th_archive_skip why, const char *detail)
{
	struct producer *p = ctx;
	p->skipped++;
	if (why == TH_SKIP_SYMLINK_LOOP || why == TH_SKIP_UNREADABLE || why == TH_SKIP_NOT_REGULAR)
		th_log_warn("produce", "skipped %s (%s%s%s)", path, th_archive_skip_name(why),
			    detail && *detail ? ": " : "", detail ? detail : "");
}

int th_cmd_produce(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"topic", required_argument, NULL, 't'},
		{"brokers", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct th_config cf;
	struct producer p = {0};
	struct th_parser *parser = NULL;
	struct th_archive *ar = NULL;
	const struct th_archive_file *af;
	rd_kafka_conf_t *conf = NULL;
	char errstr[512];
	const char *topic = NULL, *brokers = NULL;
	int c, rc = 0, ret = TH_EXIT_OK, n_sets = 0;
	char **sets = calloc((size_t)argc + 2, sizeof(*sets)), bset[1024];

	th_config_init(&cf);
	if (!sets) {
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:t:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': rc = th_config_load(&cf, optarg, errstr, sizeof(errstr)); break;
		case 's': sets[n_sets++] = optarg; break; /* applied after the environment */
		case 't': topic = optarg; break;
		case 'b': brokers = optarg; break;
		case 'h':
			printf("Usage: trailhound produce [-c FILE] [-b BROKERS] [-t TOPIC] "
			       "FILE|DIR...|-\n"
			       "\n"
			       "Publishes CloudTrail files (every framing `scan` reads) to Kafka, one\n"
			       "message per event, keyed by the credential owner's account\n"
			       "(userIdentity.accountId, else recipientAccountId), with an idempotent\n"
			       "producer. The topic defaults to the first input_topics entry.\n"
			       "Files and directories (an S3 archive) are read in CloudTrail delivery\n"
			       "order, as `scan` reads them; a file named twice is sent once.\n"
			       "\n"
			       "Options:\n"
			       "  -c, --config FILE     the configuration file (brokers, input_topics,\n"
			       "                        kafka.* settings such as TLS and SASL)\n"
			       "  -s, --set KEY=VALUE   override one setting (kafka.* pass to librdkafka)\n"
			       "  -b, --brokers LIST    bootstrap servers (the setting brokers)\n"
			       "  -t, --topic TOPIC     the topic (default: the first input_topics entry)\n"
			       "  -h, --help            this text\n"
			       "\n"
			       "Exit codes: 0 all sent, 3 an input could not be read or records were\n"
			       "rejected, 4 configuration, 5 delivery failure.\n");
			goto out;
		default: ret = TH_EXIT_USAGE; goto out;
		}
		if (rc) {
			fprintf(stderr, "trailhound produce: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
	}
	/* file < TRAILHOUND_* environment < --set < -b */
	if (brokers) {
		snprintf(bset, sizeof(bset), "brokers=%s", brokers);
		sets[n_sets++] = bset;
	}
	if ((ret = th_cmd_apply_settings(&cf, sets, n_sets, "produce")))
		goto out;
	p.topic = topic ? topic : cf.input_topics[0];
	if (!(conf = th_bridge_producer_conf(&cf, errstr, sizeof(errstr)))) {
		fprintf(stderr, "trailhound produce: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	rd_kafka_conf_set_opaque(conf, &p);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_error_cb(conf, produce_error_cb);
	if (!(p.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
		fprintf(stderr, "trailhound produce: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	conf = NULL;
	th_cmd_install_signals();
	if (th_parser_new(&parser, (size_t)cf.record_max)) {
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	th_parser_set_max_future_skew(parser, cf.max_future_skew_ms);
	struct th_sink sink = {produce_event, produce_reject, &p};
	/* The files in the order `scan` reads them (delivery order, across
	 * accounts and regions). In argument order, a shell glob of an archive
	 * sent one region's whole history before the next, and a worker
	 * replaying the topic saw another stream than scan of the same files. */
	char *dash[] = {"-"};
	int nfiles = argc - optind;
	if (th_archive_new(&ar, nfiles ? argv + optind : dash, nfiles ? nfiles : 1, produce_skip,
			   &p)) {
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	while (th_cmd_running && th_archive_next(ar, &af) == 0) {
		const char *path = af->path;
		struct th_input *in;
		p.input = path;
		if (th_input_open(&in, path, 0, errstr, sizeof(errstr))) {
			fprintf(stderr, "trailhound produce: %s\n", errstr);
			if (af->explicit_arg)
				ret = TH_EXIT_INPUT;
			else
				p.skipped++; /* found by walking, gone since */
			continue;
		}
		/* no record of a log file is later than its delivery */
		th_parser_set_delivered(parser, th_archive_delivered(path));
		if (th_input_run(in, parser, &sink) && th_cmd_running)
			ret = TH_EXIT_INPUT;
		th_input_close(in);
	}
	/* in 1 s slices, so an authentication or TLS failure, or Ctrl-C, ends
	 * the wait (what is still queued is reported as not delivered) */
	for (int i = 0; i < FLUSH_TIMEOUT_MS / 1000 && th_cmd_running && !p.conn_err[0] &&
			rd_kafka_outq_len(p.rk) > 0;
	     i++)
		rd_kafka_flush(p.rk, 1000);
	if (p.conn_err[0]) {
		fprintf(stderr, "trailhound produce: cannot use the brokers %s: %s (check the "
				"kafka.sasl.* and kafka.ssl.* settings)\n",
			cf.brokers, p.conn_err);
		ret = TH_EXIT_CONFIG;
	} else if (rd_kafka_outq_len(p.rk) > 0 || p.failed) {
		if (rd_kafka_outq_len(p.rk) > 0 && !th_cmd_running)
			fprintf(stderr, "trailhound produce: stopped: %d event(s) not delivered\n",
				rd_kafka_outq_len(p.rk));
		else if (rd_kafka_outq_len(p.rk) > 0)
			/* no delivery report yet: librdkafka is still retrying
			 * (message.timeout.ms is longer than this wait), which
			 * is what a broker that never answers looks like */
			fprintf(stderr, "trailhound produce: %d event(s) not delivered after %d s: "
					"no broker of %s took them (is one up and reachable, does "
					"topic %s exist?)\n",
				rd_kafka_outq_len(p.rk), FLUSH_TIMEOUT_MS / 1000, cf.brokers, p.topic);
		ret = TH_EXIT_RUNTIME;
	}
	else if (p.rejected && ret == TH_EXIT_OK)
		ret = TH_EXIT_INPUT;
	th_log_info("produce", "%" PRIu64 " events sent to %s, %" PRIu64 " delivered, %" PRIu64
			       " rejected, %" PRIu64 " failed; %" PRIu64 " files skipped",
		    p.sent, p.topic, p.delivered, p.rejected, p.failed, p.skipped);
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (p.rk)
		rd_kafka_destroy(p.rk);
	th_parser_destroy(parser);
	th_archive_destroy(ar);
	free(sets);
	th_config_free(&cf);
	return ret;
}
