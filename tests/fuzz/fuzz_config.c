/*
 * libFuzzer target for the configuration parser (src/config.c): the whole
 * input as a config file (th_config_load(), through a memfd so no file is
 * written), then every line of it as `--set key=value` (th_config_set_kv())
 * on a fresh config, and as a split key/value pair (th_config_set()).
 *
 * Oracles: ASan/UBSan/LeakSanitizer; each count in struct th_config stays
 * within its array; a failed call leaves an error message; a loaded config
 * frees cleanly; and comments are inert: when the file loads, the same
 * file without its comment lines loads too, to the same settings.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "trailhound/config.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void check(const struct th_config *cf, const char *how)
{
	if (cf->detect.n_cli_user_agents < 0 ||
	    (size_t)cf->detect.n_cli_user_agents > COUNT(cf->detect.cli_user_agents) ||
	    cf->detect.n_lambda_user_agents < 0 ||
	    (size_t)cf->detect.n_lambda_user_agents > COUNT(cf->detect.lambda_user_agents) ||
	    cf->detect.n_trusted_asns < 0 ||
	    (size_t)cf->detect.n_trusted_asns > COUNT(cf->detect.trusted_asns) ||
	    cf->n_amazon_asns < 0 || (size_t)cf->n_amazon_asns > COUNT(cf->amazon_asns) ||
	    cf->n_input_topics < 0 || (size_t)cf->n_input_topics > COUNT(cf->input_topics) ||
	    cf->n_kafka < 0 || (size_t)cf->n_kafka > COUNT(cf->kafka_keys) || cf->n_owned < 0 ||
	    (size_t)cf->n_owned > COUNT(cf->owned))
		fuzz_fail("%s: a list count is out of its array's bounds", how);
	for (int i = 0; i < cf->detect.n_cli_user_agents; i++)
		if (!cf->detect.cli_user_agents[i])
			fuzz_fail("%s: cli_user_agents[%d] is NULL", how, i);
	for (int i = 0; i < cf->n_input_topics; i++)
		if (!cf->input_topics[i] || !*cf->input_topics[i])
			fuzz_fail("%s: input topic %d is empty", how, i);
	for (int i = 0; i < cf->n_kafka; i++)
		if (!cf->kafka_keys[i] || !cf->kafka_values[i])
			fuzz_fail("%s: kafka property %d is NULL", how, i);
	(void)strlen(th_config_alert_schema(cf));
}

static bool same_str(const char *a, const char *b)
{
	return (!a || !*a) ? (!b || !*b) : (b && strcmp(a, b) == 0);
}

static bool same_strs(const char *const *a, int na, const char *const *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (!same_str(a[i], b[i]))
			return false;
	return true;
}

/* The settings this target knows of; NULL when equal, else the first that differs. */
static const char *differs(const struct th_config *a, const struct th_config *b)
{
	const struct th_detect_conf *x = &a->detect, *y = &b->detect;
	if (x->activation_ms != y->activation_ms || x->training_ms != y->training_ms ||
	    x->dedup_ms != y->dedup_ms || x->hold_ms != y->hold_ms)
		return "a detection period";
	if (!same_strs(x->cli_user_agents, x->n_cli_user_agents, y->cli_user_agents,
		       y->n_cli_user_agents))
		return "cli_user_agents";
	if (!same_strs(x->lambda_user_agents, x->n_lambda_user_agents, y->lambda_user_agents,
		       y->n_lambda_user_agents))
		return "lambda_user_agents";
	if (x->n_trusted_asns != y->n_trusted_asns ||
	    memcmp(x->trusted_asns, y->trusted_asns, sizeof(x->trusted_asns[0]) * (size_t)x->n_trusted_asns))
		return "trusted_asns";
	if (a->n_amazon_asns != b->n_amazon_asns ||
	    memcmp(a->amazon_asns, b->amazon_asns, sizeof(a->amazon_asns[0]) * (size_t)a->n_amazon_asns))
		return "amazon_asns";
	if (!same_str(a->asn_db, b->asn_db) || !same_str(a->aws_ranges, b->aws_ranges) ||
	    !same_str(a->brokers, b->brokers) || !same_str(a->group_id, b->group_id) ||
	    !same_str(a->output_topic, b->output_topic) ||
	    !same_str(a->changelog_topic, b->changelog_topic) ||
	    !same_str(a->dead_letter_topic, b->dead_letter_topic) ||
	    !same_str(a->transactional_id, b->transactional_id) ||
	    !same_str(a->state_dir, b->state_dir) ||
	    !same_str(a->schema_registry_url, b->schema_registry_url) ||
	    !same_str(a->alert_schema, b->alert_schema))
		return "a string setting";
	if (!same_strs((const char *const *)a->input_topics, a->n_input_topics,
		       (const char *const *)b->input_topics, b->n_input_topics))
		return "input_topics";
	if (a->batch_size != b->batch_size || a->commit_interval_ms != b->commit_interval_ms ||
	    a->record_max != b->record_max || a->schema_id != b->schema_id ||
	    a->restore_timeout_ms != b->restore_timeout_ms)
		return "a number setting";
	if (!same_strs((const char *const *)a->kafka_keys, a->n_kafka,
		       (const char *const *)b->kafka_keys, b->n_kafka) ||
	    !same_strs((const char *const *)a->kafka_values, a->n_kafka,
		       (const char *const *)b->kafka_values, b->n_kafka))
		return "a kafka.* property";
	return NULL;
}

/* Load @p size bytes as a config file (through a memfd). */
static int load(struct th_config *cf, const uint8_t *data, size_t size, char *err, size_t errsz)
{
	char path[64];
	int rc = TH_EIO, fd = memfd_create("fuzz-config", MFD_CLOEXEC);

	if (fd < 0)
		fuzz_fail("memfd_create failed");
	if (!size || write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		err[0] = '\0';
		rc = th_config_load(cf, path, err, errsz);
		if (rc && !err[0])
			fuzz_fail("th_config_load failed without a message");
	}
	close(fd);
	return rc;
}

/* The file without its comment lines (a line whose first non-space is '#'). */
static uint8_t *strip_comments(const uint8_t *data, size_t size, size_t *out_len)
{
	uint8_t *out = malloc(size ? size : 1);
	size_t n = 0;
	if (!out)
		fuzz_fail("out of memory");
	for (size_t at = 0; at < size;) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t len = nl ? (size_t)(nl - (data + at)) + 1 : size - at, i = 0;
		while (i < len && data[at + i] != '\n' && isspace(data[at + i]))
			i++;
		if (i == len || data[at + i] != '#') {
			memcpy(out + n, data + at, len);
			n += len;
		}
		at += len;
	}
	*out_len = n;
	return out;
}

static void load_file(const uint8_t *data, size_t size)
{
	struct th_config cf, bare;
	char err[512], err2[512];
	size_t blen;
	uint8_t *stripped = strip_comments(data, size, &blen);

	th_config_init(&cf);
	th_config_init(&bare);
	int rc = load(&cf, data, size, err, sizeof(err));
	check(&cf, "load");
	if (rc == 0 && blen != size) {
		if (load(&bare, stripped, blen, err2, sizeof(err2)))
			fuzz_fail("the file loads, but without its comments it fails: %s", err2);
		const char *what = differs(&cf, &bare);
		if (what)
			fuzz_fail("a comment changed %s", what);
	}
	th_config_free(&cf);
	th_config_free(&bare);
	free(stripped);
}

static void set_lines(const uint8_t *data, size_t size)
{
	struct th_config cf, cf2;
	char *text = malloc(size + 1), err[512];

	if (!text)
		fuzz_fail("out of memory");
	memcpy(text, data, size);
	text[size] = '\0';
	th_config_init(&cf);
	th_config_init(&cf2);
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		err[0] = '\0';
		if (th_config_set_kv(&cf, line, err, sizeof(err)) && !err[0])
			fuzz_fail("th_config_set_kv failed without a message");
		char *eq = strchr(line, '=');
		if (eq) {
			*eq = '\0';
			err[0] = '\0';
			if (th_config_set(&cf2, line, eq + 1, err, sizeof(err)) && !err[0])
				fuzz_fail("th_config_set failed without a message");
		}
	}
	check(&cf, "set_kv");
	check(&cf2, "set");
	th_config_free(&cf);
	th_config_free(&cf2);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load_file(data, size);
	set_lines(data, size);
	return 0;
}
