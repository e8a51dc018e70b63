/*
 * libFuzzer target for the configuration parser (src/config.c): the whole
 * input as a config file (th_config_load(), through a memfd so no file is
 * written), then every line of it as `--set key=value` (th_config_set_kv())
 * on a fresh config, and as a split key/value pair (th_config_set()).
 *
 * Oracles: ASan/UBSan/LeakSanitizer; each count in struct th_config stays
 * within its array; a failed call leaves an error message; a loaded config
 * frees cleanly.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void load_file(const uint8_t *data, size_t size)
{
	struct th_config cf;
	char path[64], err[512] = "";
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto cleanup;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	th_config_init(&cf);
	if (th_config_load(&cf, path, err, sizeof(err)) && !err[0])
		fuzz_fail("th_config_load failed without a message");
	check(&cf, "load");
	th_config_free(&cf);
cleanup:
	close(fd);
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
