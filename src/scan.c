/*
 * `trailhound scan`: the offline pipeline. Reads CloudTrail files (or stdin),
 * runs parser → detector over one state store, writes alerts as JSON lines on
 * stdout and a summary on stderr. The same detector runs in the Kafka worker;
 * scan is how investigators and tests run it over files.
 */
#include "trailhound/cli.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/avro_alert.h"
#include "trailhound/config.h"
#include "trailhound/detect.h"
#include "trailhound/input.h"
#include "trailhound/variation.h"

struct scan {
	struct th_parser *parser;
	struct th_detector *det;
	struct th_state *st;
	struct th_wbuf out;
	FILE *dead;
	const char *dead_path;
	int dead_err; /* errno of the first failed dead-letter write, 0 = none */
	int out_err;  /* errno of the first failed write to stdout */
	struct th_avro_alert *avro; /* --avro-out */
	FILE *avro_out;
	struct th_wbuf avro_msg;
	const char *input_name;
	uint64_t read, parsed, rejected_by[TH_REJECT__COUNT], alerts;
	uint64_t since_commit, batch;
	uint64_t inputs_failed; /* inputs that could not be opened or read to the end */
	int fatal;
	bool progress, quiet_rejects, parse_only;
	double t0, last_progress;
	struct th_input *in;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void show_progress(struct scan *s, bool done)
{
	double t = now_s();
	if (!done && t - s->last_progress < 0.5)
		return;
	s->last_progress = t;
	double mb = s->in ? (double)th_input_bytes_read(s->in) / 1e6 : 0;
	fprintf(stderr, "\r%s: %" PRIu64 " events, %.1f MB, %" PRIu64 " alerts, %.0f events/s%s",
		s->input_name, s->read, mb, s->alerts, (double)s->read / (t - s->t0 + 1e-9),
		done ? "\n" : "   ");
}

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct scan *s = ctx;
	th_wbuf_reset(&s->out);
	th_alert_to_json(a, &s->out);
	th_put_u8(&s->out, '\n');
	if (s->out.oom)
		return TH_ENOMEM;
	if (fwrite(s->out.p, 1, s->out.len, stdout) != s->out.len) {
		/* An alert that cannot be written is lost: stop (exit 5), never go on. */
		s->out_err = errno ? errno : EIO;
		return TH_EIO;
	}
	if (s->avro_out) {
		/* Length-prefixed so a reader can split the file back into the
		 * exact Kafka message values the worker would produce. */
		int rc = th_avro_alert_encode(s->avro, a, &s->avro_msg);
		if (rc)
			return rc;
		uint32_t n = (uint32_t)s->avro_msg.len;
		uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
				  (uint8_t)n};
		if (fwrite(len, 1, 4, s->avro_out) != 4 ||
		    fwrite(s->avro_msg.p, 1, n, s->avro_out) != n)
			return TH_EIO;
	}
	s->alerts++;
	return 0;
}

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct scan *s = ctx;
	struct th_input_ref ref = {.topic = s->input_name, .partition = -1,
				   .offset = (int64_t)offset};
	int rc;
	(void)raw;
	(void)raw_len;
	s->read++;
	s->parsed++;
	if (s->parse_only)
		return 0;
	if ((rc = th_detector_process(s->det, ev, &ref))) {
		if (!s->out_err) /* a failed alert write is reported once, at the end */
			fprintf(stderr, "trailhound: detector failed at %s byte %" PRIu64 ": %s\n",
				s->input_name, offset, th_strerror(rc));
		s->fatal = rc;
		return rc;
	}
	/* Coalesced writes: LMDB sees one put per distinct key per batch. */
	if (++s->since_commit >= s->batch) {
		s->since_commit = 0;
		if ((rc = th_detector_checkpoint(s->det)) ||
		    (rc = th_state_commit(s->st, TH_STATE_NO_OFFSET))) {
			s->fatal = rc;
			return rc;
		}
	}
	if (s->progress && (s->read & 4095) == 0)
		show_progress(s, false);
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	struct scan *s = ctx;
	s->read++;
	s->rejected_by[why < TH_REJECT__COUNT ? why : TH_REJECT_MALFORMED_JSON]++;
	if (!s->quiet_rejects)
		fprintf(stderr, "%s: byte %" PRIu64 ": rejected (%s): %s\n", s->input_name, offset,
			th_reject_name(why), detail);
	if (s->dead) {
		/* Dead letter: the original bytes and why, one JSON object per line. */
		struct th_wbuf w = {0};
		char num[32];
		TH_PUT_LIT(&w, "{\"input\":");
		th_json_put_string(&w, s->input_name);
		snprintf(num, sizeof(num), ",\"offset\":%" PRIu64, offset);
		th_put_bytes(&w, num, strlen(num));
		TH_PUT_LIT(&w, ",\"reason\":");
		th_json_put_string(&w, th_reject_name(why));
		TH_PUT_LIT(&w, ",\"detail\":");
		th_json_put_string(&w, detail);
		/* base64: a rejected record may not be UTF-8 or even text */
		TH_PUT_LIT(&w, ",\"raw_base64\":\"");
		unsigned char *b64 = malloc(4 * ((raw_len + 2) / 3) + 1);
		if (b64) {
			int n = EVP_EncodeBlock(b64, (const unsigned char *)raw, (int)raw_len);
			th_put_bytes(&w, b64, n > 0 ? (size_t)n : 0);
			free(b64);
		}
		TH_PUT_LIT(&w, "\"}\n");
		if (w.oom || fwrite(w.p, 1, w.len, s->dead) != w.len) {
			/* Report once; the scan goes on (its alerts are still good)
			 * and exits 5 because the dead letters are incomplete. */
			s->dead_err = w.oom ? ENOMEM : errno ? errno : EIO;
			fprintf(stderr, "trailhound scan: dead letter %s: %s; rejected records are "
					"no longer written\n",
				s->dead_path, strerror(s->dead_err));
			fclose(s->dead);
			s->dead = NULL;
		}
		th_wbuf_free(&w);
	}
}

static void scan_usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound scan [options] [FILE...|-]\n"
		"\n"
		"Runs the detector over CloudTrail files: JSON lines, pretty-printed JSON,\n"
		"{\"Records\":[...]} log files, arrays, EventBridge envelopes; gzip or not.\n"
		"Alerts go to stdout as JSON lines; a summary goes to stderr.\n"
		"\n"
		"Options:\n"
		"  --state DIR          keep the detector state in DIR (default: a temporary\n"
		"                       directory removed at exit)\n"
		"  --asn-db FILE        ASN database (.mmdb, GeoLite2-ASN schema)  [$TH_ASN_DB]\n"
		"  --aws-ranges FILE    AWS ip-ranges.json; without it AWS addresses are\n"
		"                       recognised by Amazon's ASNs          [$TH_AWS_RANGES]\n"
		"  -c, --config FILE    detection settings from a config file (see --help-config)\n"
		"  --set KEY=VALUE      one setting (same keys as the config file)\n"
		"  --help-config        list the settings with their defaults\n"
		"  --dead-letter FILE   write rejected records (raw bytes + reason) as JSON lines\n"
		"  --avro-out FILE      also write each alert as a Confluent-framed Avro message,\n"
		"                       each prefixed by its 4-byte big-endian length; the\n"
		"                       schema id is schema_id, or registered with\n"
		"                       schema_registry_url, or 1\n"
		"  --record-max BYTES   per-record size limit, 1024..104857600 (default: the\n"
		"                       record_max setting, 1048576)\n"
		"  --batch N            events per state commit (default 5000)\n"
		"  --quiet-rejects      do not print each rejected record\n"
		"  --parse-only         parse and count, no detection (the benchmark baseline)\n"
		"  --summary-json FILE  also write every counter as one JSON object to FILE\n"
		"  --no-progress        no progress line even on a terminal\n"
		"  -h, --help           this text\n"
		"\n"
		"Exit codes: 0 no alerts, 1 alerts raised, 2 usage error, 3 an input could not be\n"
		"read, 4 configuration/reference data error, 5 runtime failure (state store).\n");
}

/* A CLI count: digits only (no sign, blanks or suffix), within [min, max].
 * strtoull alone takes "10abc" as 10 and "-1" as 2^64-1. */
static int parse_count(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out)
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
			"trailhound scan: %s \"%s\": want a whole number in [%" PRIu64 ", %" PRIu64
			"]\n",
			opt, v, min, max);
		return TH_EINVAL;
	}
	*out = n;
	return 0;
}

/* Outputs (dead letters, Avro, summary) are opened for writing, which
 * truncates: refuse one that names an input before anything is opened. */
static int refuse_input_as_output(const char *what, const char *out, char **inputs, int ninputs)
{
	struct stat so, si;
	if (!out || stat(out, &so) != 0 || !S_ISREG(so.st_mode))
		return 0;
	for (int i = 0; i < ninputs; i++) {
		bool same = strcmp(inputs[i], "-") == 0
				    ? fstat(STDIN_FILENO, &si) == 0
				    : stat(inputs[i], &si) == 0;
		if (same && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
			fprintf(stderr,
				"trailhound scan: %s %s is also an input; refusing to overwrite it\n",
				what, out);
			return TH_EINVAL;
		}
	}
	return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The --avro-out encoder and its schema id: configured, registered, or 1. */
static int avro_setup(struct scan *s, const struct th_config *cf, char *errstr,
		      size_t errstr_size)
{
	int32_t id = (int32_t)cf->schema_id;
	int rc;

	if ((rc = th_avro_alert_new(&s->avro, th_config_alert_schema(cf), id, errstr, errstr_size)))
		return rc;
	if (!id && cf->schema_registry_url && *cf->schema_registry_url) {
		char subject[512];
		/* Confluent's default TopicNameStrategy: what consumers look up. */
		snprintf(subject, sizeof(subject), "%s-value",
			 cf->output_topic ? cf->output_topic : "");
		if ((rc = th_schema_register(cf->schema_registry_url, subject,
					     th_avro_alert_schema_json(s->avro), &id, errstr,
					     errstr_size)))
			return rc;
		fprintf(stderr, "trailhound scan: alert schema registered as %s, id %" PRId32 "\n",
			subject, id);
	} else if (!id) {
		id = 1;
		fprintf(stderr, "trailhound scan: no schema_id or schema_registry_url set; "
				"--avro-out messages carry schema id 1\n");
	}
	th_avro_alert_set_schema_id(s->avro, id);
	return 0;
}

/* --summary-json: every counter as one JSON object, for scripts and tests that
 * must not parse the text summary. Keys are stable names; every reject reason
 * is listed, zeros included, so a consumer can tell 0 from "not counted". */
static int write_summary_json(struct scan *s, const char *path)
{
	struct th_detect_stats ds;
	struct th_wbuf w = {0};
	uint64_t rejected = 0;
	char num[64];
	FILE *f = NULL;
	int rc = 0, err = 0;

	th_detector_get_stats(s->det, &ds);
	for (int i = 0; i < TH_REJECT__COUNT; i++)
		rejected += s->rejected_by[i];
#define PUT_NUM(fmt, v)                                                                            \
	do {                                                                                       \
		int n_ = snprintf(num, sizeof(num), fmt, v);                                       \
		th_put_bytes(&w, num, (size_t)n_);                                                 \
	} while (0)
	TH_PUT_LIT(&w, "{\"records\":{\"read\":");
	PUT_NUM("%" PRIu64, s->read);
	TH_PUT_LIT(&w, ",\"parsed\":");
	PUT_NUM("%" PRIu64, s->parsed);
	TH_PUT_LIT(&w, ",\"rejected\":");
	PUT_NUM("%" PRIu64, rejected);
	TH_PUT_LIT(&w, ",\"rejected_by\":{");
	for (int i = 1; i < TH_REJECT__COUNT; i++) {
		if (i > 1)
			th_put_u8(&w, ',');
		th_json_put_string(&w, th_reject_name(i));
		PUT_NUM(":%" PRIu64, s->rejected_by[i]);
	}
	TH_PUT_LIT(&w, "}},\"alerts\":{\"total\":");
	PUT_NUM("%" PRIu64, s->alerts);
	TH_PUT_LIT(&w, ",\"by_variation\":{");
	for (int v = 1; v <= 6; v++) {
		int n = snprintf(num, sizeof(num), "%s\"%d\":%" PRIu64, v > 1 ? "," : "", v,
				 ds.alerts[v]);
		th_put_bytes(&w, num, (size_t)n);
	}
	TH_PUT_LIT(&w, "}},\"detector\":{");
	const struct {
		const char *name;
		uint64_t v;
	} det[] = {
		{"events", ds.events},
		{"candidates", ds.candidates},
		{"inside_uses", ds.inside_uses},
		{"remote_uses", ds.remote_uses},
		{"excluded", ds.excluded},
		{"source_unrecognised", ds.source_unrecognised},
		{"held", ds.held},
		{"held_resolved", ds.held_resolved},
		{"held_expired", ds.held_expired},
		{"upgrades", ds.upgrades},
		{"suppressed_activation", ds.suppressed_activation},
		{"suppressed_dedup", ds.suppressed_dedup},
		{"pruned", ds.pruned},
	};
	for (size_t i = 0; i < sizeof(det) / sizeof(det[0]); i++) {
		if (i)
			th_put_u8(&w, ',');
		th_json_put_string(&w, det[i].name);
		PUT_NUM(":%" PRIu64, det[i].v);
	}
	TH_PUT_LIT(&w, "}}\n");
#undef PUT_NUM
	if (w.oom) {
		rc = TH_ENOMEM;
		goto cleanup;
	}
	if (!(f = fopen(path, "w")) || fwrite(w.p, 1, w.len, f) != w.len) {
		err = errno;
		rc = TH_EIO;
		goto cleanup;
	}
cleanup:
	if (f && fclose(f) && !rc) {
		err = errno;
		rc = TH_EIO;
	}
	if (rc)
		fprintf(stderr, "trailhound scan: %s: %s\n", path,
			err ? strerror(err) : th_strerror(rc));
	th_wbuf_free(&w);
	return rc;
}

static void print_summary(struct scan *s, double secs)
{
	struct th_detect_stats ds;
	uint64_t rejected = 0;
	th_detector_get_stats(s->det, &ds);
	for (int i = 0; i < TH_REJECT__COUNT; i++)
		rejected += s->rejected_by[i];
	fprintf(stderr, "trailhound scan: %" PRIu64 " records read, %" PRIu64 " parsed, %" PRIu64
			" rejected\n",
		s->read, s->parsed, rejected);
	if (s->inputs_failed)
		fprintf(stderr, "  inputs not read %" PRIu64 "\n", s->inputs_failed);
	for (int i = 1; i < TH_REJECT__COUNT; i++)
		if (s->rejected_by[i])
			fprintf(stderr, "  rejected %-16s %" PRIu64 "\n", th_reject_name(i),
				s->rejected_by[i]);
	fprintf(stderr, "  alerts %" PRIu64 "\n", s->alerts);
	for (size_t i = 0; i < th_variations_count; i++) {
		const struct th_variation *v = &th_variations[i];
		if (ds.alerts[v->id])
			fprintf(stderr, "    %d %-50s %-13s %" PRIu64 "\n", v->id, v->name, v->severity,
				ds.alerts[v->id]);
	}
	fprintf(stderr,
		"  candidates %" PRIu64 " (inside %" PRIu64 ", remote %" PRIu64 ", excluded %" PRIu64
		"), held %" PRIu64 " (resolved %" PRIu64 ", expired %" PRIu64 "), upgrades %" PRIu64
		"\n",
		ds.candidates, ds.inside_uses, ds.remote_uses, ds.excluded, ds.held, ds.held_resolved,
		ds.held_expired, ds.upgrades);
	fprintf(stderr, "  source unrecognised %" PRIu64 "\n", ds.source_unrecognised);
	fprintf(stderr,
		"  suppressed: activation %" PRIu64 ", dedup %" PRIu64 "; pruned %" PRIu64 "\n",
		ds.suppressed_activation, ds.suppressed_dedup, ds.pruned);
	fprintf(stderr, "  %.2f s, %.0f records/s\n", secs, (double)s->read / (secs + 1e-9));
}

int th_cmd_scan(int argc, char **argv)
{
	enum { O_STATE = 256, O_ASN, O_RANGES, O_DEAD, O_RECMAX, O_BATCH, O_QUIET, O_NOPROG,
	       O_SET, O_HELPCONF, O_AVRO, O_PARSEONLY, O_SUMMARY };
	static const struct option opts[] = {
		{"state", required_argument, NULL, O_STATE},
		{"asn-db", required_argument, NULL, O_ASN},
		{"aws-ranges", required_argument, NULL, O_RANGES},
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, O_SET},
		{"help-config", no_argument, NULL, O_HELPCONF},
		{"dead-letter", required_argument, NULL, O_DEAD},
		{"avro-out", required_argument, NULL, O_AVRO},
		{"record-max", required_argument, NULL, O_RECMAX},
		{"batch", required_argument, NULL, O_BATCH},
		{"quiet-rejects", no_argument, NULL, O_QUIET},
		{"no-progress", no_argument, NULL, O_NOPROG},
		{"parse-only", no_argument, NULL, O_PARSEONLY},
		{"summary-json", required_argument, NULL, O_SUMMARY},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct scan s = {.batch = 5000};
	struct th_config cf;
	struct th_enrich *en = NULL;
	char errstr[512], tmpdir[256] = "";
	const char *state_dir = NULL, *dead_path = NULL, *avro_path = NULL, *summary_path = NULL;
	uint64_t n;
	bool no_progress = false;
	int ret = TH_EXIT_OK, rc = 0, c;

	th_config_init(&cf);
	optind = 1;
	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		switch (c) {
		case O_STATE: state_dir = optarg; break;
		case O_ASN: rc = th_config_set(&cf, "asn_db", optarg, errstr, sizeof(errstr)); break;
		case O_RANGES:
			rc = th_config_set(&cf, "aws_ranges", optarg, errstr, sizeof(errstr));
			break;
		case 'c': rc = th_config_load(&cf, optarg, errstr, sizeof(errstr)); break;
		case O_SET: rc = th_config_set_kv(&cf, optarg, errstr, sizeof(errstr)); break;
		case O_HELPCONF: th_config_help(stdout); goto out;
		case O_DEAD: dead_path = s.dead_path = optarg; break;
		case O_AVRO: avro_path = optarg; break;
		case O_RECMAX:
			/* the bounds of the record_max setting, which this overrides */
			if (parse_count("--record-max", optarg, 1024, 104857600, &n)) {
				ret = TH_EXIT_USAGE;
				goto out;
			}
			cf.record_max = (long)n;
			break;
		case O_BATCH:
			if (parse_count("--batch", optarg, 1, 100000000, &s.batch)) {
				ret = TH_EXIT_USAGE;
				goto out;
			}
			break;
		case O_QUIET: s.quiet_rejects = true; break;
		case O_NOPROG: no_progress = true; break;
		case O_PARSEONLY: s.parse_only = true; break;
		case O_SUMMARY: summary_path = optarg; break;
		case 'h': scan_usage(stdout); goto out;
		default: scan_usage(stderr); ret = TH_EXIT_USAGE; goto out;
		}
		if (rc) {
			fprintf(stderr, "trailhound scan: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
	}
	if (refuse_input_as_output("--dead-letter", dead_path, argv + optind, argc - optind) ||
	    refuse_input_as_output("--avro-out", avro_path, argv + optind, argc - optind) ||
	    refuse_input_as_output("--summary-json", summary_path, argv + optind, argc - optind)) {
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (th_config_open_enrich(&cf, &en, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	if (!state_dir) {
		const char *tmp = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/trailhound-scan-XXXXXX", tmp ? tmp : "/tmp");
		if (!mkdtemp(tmpdir)) {
			fprintf(stderr, "trailhound scan: mkdtemp: %s\n", strerror(errno));
			ret = TH_EXIT_RUNTIME;
			goto out;
		}
		state_dir = tmpdir;
	}
	if ((rc = th_state_open(&s.st, state_dir, 0, errstr, sizeof(errstr)))) {
		/* An untrusted store is the user's to remove: scan has no
		 * changelog to rebuild it from, and never deletes their files. */
		fprintf(stderr, "trailhound scan: %s%s\n", errstr,
			rc == TH_EUNTRUSTED ? " (move it away or delete it, then scan again)" : "");
		ret = rc == TH_EUNTRUSTED ? TH_EXIT_CONFIG : TH_EXIT_RUNTIME;
		goto out;
	}
	if (dead_path && !(s.dead = fopen(dead_path, "w"))) {
		fprintf(stderr, "trailhound scan: %s: %s\n", dead_path, strerror(errno));
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (avro_path && avro_setup(&s, &cf, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	if (avro_path && !(s.avro_out = fopen(avro_path, "wb"))) {
		fprintf(stderr, "trailhound scan: %s: %s\n", avro_path, strerror(errno));
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (th_parser_new(&s.parser, (size_t)cf.record_max) ||
	    th_detector_new(&s.det, &cf.detect, en, s.st, on_alert, &s)) {
		fprintf(stderr, "trailhound scan: out of memory\n");
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	th_parser_set_max_future_skew(s.parser, cf.max_future_skew_ms);
	s.progress = !no_progress && isatty(STDERR_FILENO);
	s.t0 = now_s();

	struct th_sink sink = {on_event, on_reject, &s};
	int nfiles = argc - optind;
	for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
		const char *path = nfiles ? argv[optind + i] : "-";
		s.input_name = strcmp(path, "-") == 0 ? "<stdin>" : path;
		if ((rc = th_input_open(&s.in, path, 0, errstr, sizeof(errstr)))) {
			fprintf(stderr, "trailhound scan: %s\n", errstr);
			s.inputs_failed++;
			ret = TH_EXIT_INPUT;
			continue;
		}
		rc = th_input_run(s.in, s.parser, &sink);
		if (s.progress)
			show_progress(&s, true);
		th_input_close(s.in);
		s.in = NULL;
		if (s.fatal)
			break;
		if (rc) {
			fprintf(stderr, "trailhound scan: %s: read error (%s)\n", s.input_name,
				th_strerror(rc));
			s.inputs_failed++;
			ret = TH_EXIT_INPUT;
		}
	}
	if (!s.fatal) {
		/* End of input: decide every use still held for late attribution. */
		if ((rc = th_detector_advance(s.det, true)) || (rc = th_state_commit(s.st, 0))) {
			fprintf(stderr, "trailhound scan: %s\n", th_strerror(rc));
			s.fatal = rc;
		}
	}
	/* Alerts sit in stdio's buffer until here: a full disk or closed pipe
	 * shows up only now, and must not pass as "no more alerts". */
	if ((fflush(stdout) || ferror(stdout)) && !s.out_err)
		s.out_err = errno ? errno : EIO;
	if (s.out_err) {
		fprintf(stderr, "trailhound scan: writing alerts to stdout: %s\n", strerror(s.out_err));
		if (!s.fatal)
			s.fatal = TH_EIO;
	}
	if (s.dead && (fflush(s.dead) || ferror(s.dead)) && !s.dead_err) {
		s.dead_err = errno ? errno : EIO;
		fprintf(stderr, "trailhound scan: dead letter %s: %s\n", dead_path,
			strerror(s.dead_err));
	}
	if (s.dead_err && !s.fatal)
		s.fatal = TH_EIO;
	print_summary(&s, now_s() - s.t0);
	if (summary_path && write_summary_json(&s, summary_path) && !s.fatal)
		s.fatal = TH_EIO;
	if (s.fatal)
		ret = TH_EXIT_RUNTIME;
	else if (ret == TH_EXIT_OK && s.alerts)
		ret = TH_EXIT_ALERTS;
out:
	th_detector_destroy(s.det);
	th_parser_destroy(s.parser);
	th_state_close(s.st);
	th_wbuf_free(&s.out);
	th_enrich_destroy(en);
	th_config_free(&cf);
	if (s.dead && fclose(s.dead) && ret != TH_EXIT_RUNTIME) {
		fprintf(stderr, "trailhound scan: dead letter %s: %s\n", dead_path, strerror(errno));
		ret = TH_EXIT_RUNTIME;
	}
	if (s.avro_out && fclose(s.avro_out) && ret != TH_EXIT_RUNTIME) {
		fprintf(stderr, "trailhound scan: %s: %s\n", avro_path, strerror(errno));
		ret = TH_EXIT_RUNTIME;
	}
	th_avro_alert_destroy(s.avro);
	th_wbuf_free(&s.avro_msg);
	if (tmpdir[0])
		nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return ret;
}
