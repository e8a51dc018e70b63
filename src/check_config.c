/*
 * `trailhound run --check-config` (check.h): everything the worker would
 * find wrong at start-up or at its first restore, checked without joining
 * the group or consuming, then the effective configuration with secrets
 * masked.
 */
#include "trailhound/check.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/avro_alert.h"
#include "trailhound/common.h"
#include "trailhound/enrich.h"
#include "trailhound/log.h"
#include "trailhound/metrics.h"
#include "trailhound/time.h"
#include "trailhound/worker.h"

struct check {
	FILE *out;
	int failed;
};

static void report(struct check *c, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void report(struct check *c, bool ok, const char *fmt, ...)
{
	va_list ap;
	fprintf(c->out, "%-4s ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
	if (!ok)
		c->failed++;
}

/* A client with the settings one of the worker's clients gets (kafka.X and
 * kafka.<scope>.X, scope "consumer" or "producer"): the same security
 * settings reach the same brokers. */
static rd_kafka_t *client(const struct th_config *cf, const char *scope, char *errstr,
			  size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, th_log_rdkafka);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", cf->brokers, errstr, errstr_size))
		goto fail;
	for (int i = 0; i < cf->n_kafka; i++) {
		const char *k = th_config_kafka_key(cf, i, scope);
		/* group membership settings do not apply to this client */
		if (!k || strcmp(k, "group.instance.id") == 0)
			continue;
		if (rd_kafka_conf_set(conf, k, cf->kafka_values[i], errstr, errstr_size))
			goto fail;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (rk)
		return rk;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

static const rd_kafka_metadata_topic_t *find_topic(const struct rd_kafka_metadata *md,
						   const char *name)
{
	for (int i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, name) == 0 &&
		    md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return &md->topics[i];
	return NULL;
}

/* The topic's cleanup.policy (DescribeConfigs) into policy; 0 or TH_EKAFKA. */
static int cleanup_policy(rd_kafka_t *rk, const char *topic, char *policy, size_t size,
			  char *errstr, size_t errstr_size)
{
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev = NULL;
	int rc = TH_EKAFKA;
	policy[0] = '\0';
	rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 15000);
	if (!ev) {
		th_errstr(errstr, errstr_size, "DescribeConfigs timed out");
		goto out;
	}
	if (rd_kafka_event_error(ev)) {
		th_errstr(errstr, errstr_size, "%s", rd_kafka_event_error_string(ev));
		goto out;
	}
	const rd_kafka_DescribeConfigs_result_t *r = rd_kafka_event_DescribeConfigs_result(ev);
	size_t nres = 0, nent = 0;
	const rd_kafka_ConfigResource_t **rs = rd_kafka_DescribeConfigs_result_resources(r, &nres);
	if (nres != 1 || rd_kafka_ConfigResource_error(rs[0])) {
		th_errstr(errstr, errstr_size, "%s",
			  nres == 1 ? rd_kafka_ConfigResource_error_string(rs[0]) : "no result");
		goto out;
	}
	const rd_kafka_ConfigEntry_t **es = rd_kafka_ConfigResource_configs(rs[0], &nent);
	for (size_t i = 0; i < nent; i++)
		if (strcmp(rd_kafka_ConfigEntry_name(es[i]), "cleanup.policy") == 0) {
			const char *v = rd_kafka_ConfigEntry_value(es[i]);
			snprintf(policy, size, "%s", v ? v : "");
			rc = 0;
		}
	if (rc)
		th_errstr(errstr, errstr_size, "no cleanup.policy in the topic's configuration");
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_ConfigResource_destroy(res);
	return rc;
}

/* Do the producer's settings differ from the group consumer's (a
 * kafka.producer.* or kafka.consumer.* setting)? */
static bool producer_differs(const struct th_config *cf)
{
	for (int i = 0; i < cf->n_kafka; i++) {
		const char *pk = th_config_kafka_key(cf, i, "producer");
		const char *ck = th_config_kafka_key(cf, i, "consumer");
		if (!pk != !ck || (pk && strcmp(pk, ck) != 0))
			return true;
	}
	return false;
}

/* The transactional producer with its own credentials (kafka.producer.*):
 * checked only through the consumer's, a wrong producer password passed the
 * check and `run` then failed at its start. It must reach the brokers, and
 * see the topics it writes. */
static void check_producer(struct check *c, const struct th_config *cf)
{
	char errstr[512] = "";
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_t *rk = client(cf, "producer", errstr, sizeof(errstr));
	rd_kafka_resp_err_t err;
	if (!rk) {
		report(c, false, "producer (kafka.producer.* settings): %s", errstr);
		return;
	}
	err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (err) {
		report(c, false, "brokers %s with the producer's settings (kafka.producer.*): not "
		       "reachable: %s", cf->brokers, rd_kafka_err2str(err));
	} else {
		report(c, true, "brokers %s with the producer's settings (kafka.producer.*): "
		       "reachable", cf->brokers);
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_destroy(rk);
}

static void check_kafka(struct check *c, const struct th_config *cf)
{
	char errstr[512] = "";
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_t *rk = client(cf, "consumer", errstr, sizeof(errstr));
	rd_kafka_resp_err_t err;
	int n_in = -1;
	bool in_ok = true;

	if (!rk) {
		report(c, false, "kafka client: %s", errstr);
		return;
	}
	err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (err) {
		report(c, false, "brokers %s: not reachable: %s", cf->brokers, rd_kafka_err2str(err));
		goto out;
	}
	report(c, true, "brokers %s: reachable (%d broker(s) in the cluster)", cf->brokers,
	       md->broker_cnt);
	for (int i = 0; i < cf->n_input_topics; i++) {
		const rd_kafka_metadata_topic_t *t = find_topic(md, cf->input_topics[i]);
		if (!t) {
			report(c, false, "input topic %s: does not exist", cf->input_topics[i]);
			in_ok = false;
			continue;
		}
		report(c, true, "input topic %s: %d partitions", t->topic, t->partition_cnt);
		if (n_in >= 0 && t->partition_cnt != n_in) {
			report(c, false, "input topics have different partition counts (%d and %d): one "
			       "changelog cannot be co-partitioned with both", n_in, t->partition_cnt);
			in_ok = false;
		}
		n_in = t->partition_cnt;
	}
	const rd_kafka_metadata_topic_t *cl = find_topic(md, cf->changelog_topic);
	if (!cl) {
		report(c, false, "changelog topic %s: does not exist (create it compacted, with as many "
		       "partitions as the input: deploy/topics.sh)", cf->changelog_topic);
	} else {
		/* exactly N: partition p of the input restores from partition p of
		 * the changelog, and a changelog with more partitions means it was
		 * made for another input (or the input shrank) */
		if (in_ok && n_in >= 0 && cl->partition_cnt != n_in)
			report(c, false, "changelog topic %s: %d partitions, the input has %d: they must "
			       "be co-partitioned (exactly as many partitions)",
			       cf->changelog_topic, cl->partition_cnt, n_in);
		else if (in_ok && n_in >= 0)
			report(c, true, "changelog topic %s: %d partitions, co-partitioned with the input",
			       cf->changelog_topic, cl->partition_cnt);
		char policy[128];
		if (cleanup_policy(rk, cf->changelog_topic, policy, sizeof(policy), errstr,
				   sizeof(errstr)))
			report(c, false, "changelog topic %s: cannot read its configuration: %s "
			       "(the principal needs DescribeConfigs on it for this check)",
			       cf->changelog_topic, errstr);
		else if (!strstr(policy, "compact"))
			report(c, false, "changelog topic %s: cleanup.policy is \"%s\", not compact: "
			       "retention would delete state (kafka-configs --alter --add-config "
			       "cleanup.policy=compact)", cf->changelog_topic, policy);
		else
			report(c, true, "changelog topic %s: cleanup.policy %s", cf->changelog_topic,
			       policy);
	}
	const char *outs[2] = {cf->output_topic, cf->dead_letter_topic};
	for (int i = 0; i < 2; i++) {
		if (find_topic(md, outs[i]))
			report(c, true, "%s topic %s: exists", i ? "dead-letter" : "output", outs[i]);
		else
			/* a broker with auto.create.topics.enable makes it at the
			 * first alert: a note, not a failure */
			fprintf(c->out, "note %s topic %s: does not exist yet (created at the first "
				"record only if the broker auto-creates topics)\n",
				i ? "dead-letter" : "output", outs[i]);
	}
out:
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
}

/* mkdir -p state_dir and write a file there, as the LMDB environments will. */
static void check_state_dir(struct check *c, const char *dir)
{
	char buf[1024], probe[1100];
	if (!dir || !*dir || snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) {
		report(c, false, "state_dir: empty or too long");
		return;
	}
	for (char *s = buf + 1;; s++) {
		if (*s == '/' || !*s) {
			char ch = *s;
			*s = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
				report(c, false, "state_dir %s: cannot create %s: %s", dir, buf,
				       strerror(errno));
				return;
			}
			*s = ch;
			if (!ch)
				break;
		}
	}
	snprintf(probe, sizeof(probe), "%s/.trailhound-check-XXXXXX", dir);
	int fd = mkstemp(probe);
	if (fd < 0) {
		report(c, false, "state_dir %s: not writable: %s", dir, strerror(errno));
		return;
	}
	bool ok = write(fd, "ok\n", 3) == 3;
	int e = errno;
	close(fd);
	unlink(probe);
	if (ok)
		report(c, true, "state_dir %s: writable", dir);
	else
		report(c, false, "state_dir %s: cannot write: %s", dir, strerror(e));
}

/* How old a reference file is, as a note: stale data misjudges networks
 * (AWS adds ranges every few days), yet it is no reason to refuse a start. */
static void note_age(struct check *c, const char *what, int64_t made_s, int64_t stale_days)
{
	char when[32];
	if (!made_s)
		return;
	int64_t days = ((int64_t)time(NULL) - made_s) / 86400;
	th_time_format(made_s * 1000, when, sizeof(when));
	fprintf(c->out, "note %s made %s, %" PRId64 " day(s) ago%s\n", what, when, days,
		days > stale_days ? ": stale, refresh it (the worker reloads a replaced file)" : "");
}

static void check_reference(struct check *c, struct th_config *cf)
{
	char errstr[512] = "";
	struct th_enrich *en = NULL;
	int64_t asn_db, aws_ranges;
	if (th_config_open_enrich(cf, &en, errstr, sizeof(errstr))) {
		report(c, false, "reference data: %s", errstr);
		return;
	}
	report(c, true, "reference data: loaded (asn_db %s, aws_ranges %s)",
	       cf->asn_db && *cf->asn_db ? cf->asn_db : "(default)",
	       cf->aws_ranges && *cf->aws_ranges ? cf->aws_ranges : "(none)");
	/* the same thresholds as deploy/kubernetes/prometheusrule.yaml's */
	th_enrich_built(en, &asn_db, &aws_ranges);
	note_age(c, "asn_db", asn_db, 45);
	note_age(c, "aws_ranges", aws_ranges, 7);
	th_enrich_destroy(en);
}

static void check_schema(struct check *c, const struct th_config *cf)
{
	char errstr[512] = "";
	struct th_avro_alert *av = NULL;
	if (th_avro_alert_new(&av, th_config_alert_schema(cf), cf->schema_id ? (int32_t)cf->schema_id : 1,
			      errstr, sizeof(errstr)))
		report(c, false, "alert schema %s: %s", th_config_alert_schema(cf), errstr);
	else
		report(c, true, "alert schema %s: loads", th_config_alert_schema(cf));
	th_avro_alert_destroy(av);
	if (cf->schema_id)
		report(c, true, "schema_id %ld: alerts use it, no registry needed", cf->schema_id);
	else if (cf->schema_registry_url && *cf->schema_registry_url)
		fprintf(c->out, "note schema_id 0: alert.avsc is registered at start-up with the "
			"schema_registry_url (not contacted by this check)\n");
	else
		report(c, false, "schema_id 0 and no schema_registry_url: set schema_id, or "
		       "schema_registry_url to register alert.avsc");
}

/* The address the worker would serve /metrics, /healthz and /readyz on, as
 * its start judges it (binding it is left to the start: the check may run
 * beside the worker it checks). */
static void check_metrics_listen(struct check *c, const char *listen)
{
	char errstr[512] = "";
	if (!listen || !*listen)
		return;
	if (th_metrics_check_listen(listen, errstr, sizeof(errstr)))
		report(c, false, "%s", errstr);
	else
		report(c, true, "metrics_listen %s: a valid address", listen);
}

/* The kafka.* settings `run` refuses at its start (they would silently
 * break exactly-once): refused here first, before a deployment. */
static void check_kafka_settings(struct check *c, const struct th_config *cf)
{
	char errstr[512] = "";
	if (th_worker_check_kafka_settings(cf, errstr, sizeof(errstr)))
		report(c, false, "%s", errstr);
	else
		report(c, true, "kafka.* settings keep what exactly-once needs");
}

int th_config_check(struct th_config *cf, FILE *out)
{
	struct check c = {out, 0};
	check_kafka_settings(&c, cf);
	check_kafka(&c, cf);
	if (producer_differs(cf))
		check_producer(&c, cf);
	check_state_dir(&c, cf->state_dir);
	check_metrics_listen(&c, cf->metrics_listen);
	check_reference(&c, cf);
	check_schema(&c, cf);
	fprintf(out, "\n# effective configuration (file, TRAILHOUND_* environment, --set; secrets "
		     "masked)\n");
	th_config_print(cf, out);
	fprintf(out, "\n%s: %d check(s) failed\n", c.failed ? "FAILED" : "OK", c.failed);
	fflush(out);
	return c.failed ? TH_ECONFIG : 0;
}
