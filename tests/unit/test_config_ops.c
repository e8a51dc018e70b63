/*
 * Unit tests of the operational side of the configuration: TRAILHOUND_*
 * environment overrides, the private-file rule for secrets, masking in the
 * effective configuration and in log lines, parse errors that never quote
 * a secret, JSON log lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "trailhound/config.h"
#include "trailhound/log.h"

#define SECRET "hunter2-Sup3rSecret"

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/th-config-ops-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/* Everything fn writes to stderr, as a string (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *ctx)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	int saved = dup(2);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	dup2(fileno(f), 2);
	fn(ctx);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *buf = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void test_env_overrides(void **state)
{
	struct th_config cf;
	char err[512];
	char *env[] = {"PATH=/bin",
		       "TRAILHOUND_METRICS_LISTEN=0.0.0.0:9464",
		       "TRAILHOUND_BATCH_SIZE=500",
		       "TRAILHOUND_KAFKA__SASL__PASSWORD=" SECRET,
		       "TRAILHOUND_KAFKA__CONSUMER__GROUP__INSTANCE__ID=pod-0",
		       "TRAILHOUND_INPUT_TOPICS=a,b",
		       NULL};
	char *sets[] = {"batch_size=700"};
	(void)state;
	th_config_init(&cf);
	assert_int_equal(th_config_set(&cf, "batch_size", "100", err, sizeof(err)), 0);
	assert_int_equal(th_config_apply_env(&cf, env, err, sizeof(err)), 0);
	assert_string_equal(cf.metrics_listen, "0.0.0.0:9464");
	assert_int_equal(cf.batch_size, 500); /* env over the file */
	assert_int_equal(cf.n_input_topics, 2);
	assert_int_equal(cf.n_kafka, 2);
	assert_string_equal(cf.kafka_keys[0], "sasl.password");
	assert_string_equal(cf.kafka_values[0], SECRET);
	assert_string_equal(cf.kafka_keys[1], "consumer.group.instance.id");
	/* --set over the environment */
	assert_int_equal(th_config_apply_overrides(&cf, env, sets, 1, err, sizeof(err)), 0);
	assert_int_equal(cf.batch_size, 700);
	th_config_free(&cf);
}

static void test_env_unknown_or_bad(void **state)
{
	struct th_config cf;
	char err[512];
	char *unknown[] = {"TRAILHOUND_METRIX_LISTEN=x", NULL};
	char *bad[] = {"TRAILHOUND_BATCH_SIZE=lots", NULL};
	char *badlevel[] = {"TRAILHOUND_LOG_LEVEL=chatty", NULL};
	(void)state;
	th_config_init(&cf);
	assert_int_equal(th_config_apply_env(&cf, unknown, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "TRAILHOUND_METRIX_LISTEN"));
	assert_int_equal(th_config_apply_env(&cf, bad, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "batch_size"));
	assert_int_equal(th_config_apply_env(&cf, badlevel, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "log_level"));
	th_config_free(&cf);
}

static void test_secret_keys(void **state)
{
	(void)state;
	assert_true(th_config_is_secret("kafka.sasl.password"));
	assert_true(th_config_is_secret("kafka.ssl.key.password"));
	assert_true(th_config_is_secret("kafka.producer.ssl.keystore.password"));
	assert_true(th_config_is_secret("kafka.sasl.oauthbearer.client.secret"));
	assert_true(th_config_is_secret("kafka.ssl.key.pem"));
	assert_true(th_config_is_secret("kafka.SASL.PASSWORD"));
	assert_false(th_config_is_secret("kafka.sasl.username"));
	assert_false(th_config_is_secret("kafka.security.protocol"));
	assert_false(th_config_is_secret("brokers"));
}

static void test_private_file_rule(void **state)
{
	struct th_config cf;
	char err[512];
	const char *text = "brokers = \"b:9092\"\nkafka.sasl.password = \"" SECRET "\"\n";
	(void)state;

	th_config_init(&cf);
	const char *p = write_file("open.conf", text, 0644);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(strstr(err, SECRET));
	th_config_free(&cf);

	th_config_init(&cf);
	p = write_file("group.conf", text, 0640);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), TH_ECONFIG);
	th_config_free(&cf);

	th_config_init(&cf);
	p = write_file("private.conf", text, 0600);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), 0);
	assert_string_equal(cf.kafka_values[0], SECRET);
	th_config_free(&cf);

	/* no secret: any mode is fine */
	th_config_init(&cf);
	p = write_file("public.conf", "brokers = \"b:9092\"\nkafka.sasl.username = \"u\"\n", 0644);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), 0);
	th_config_free(&cf);
}

static void test_parse_error_never_quotes_the_line(void **state)
{
	struct th_config cf;
	char err[512];
	(void)state;
	th_config_init(&cf);
	/* a password written without '=': the old error quoted the line */
	const char *p = write_file("typo.conf", "kafka.sasl.password: " SECRET "\n", 0600);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, ":1:"));
	assert_null(strstr(err, SECRET));
	th_config_free(&cf);
}

static void test_print_masks_secrets(void **state)
{
	struct th_config cf;
	char err[512], *buf = NULL;
	size_t len = 0;
	(void)state;
	th_config_init(&cf);
	assert_int_equal(th_config_set(&cf, "kafka.sasl.password", SECRET, err, sizeof(err)), 0);
	assert_int_equal(th_config_set(&cf, "kafka.sasl.username", "alice", err, sizeof(err)), 0);
	assert_int_equal(th_config_set(&cf, "schema_registry_url",
				       "https://reg:" SECRET "@registry:8081", err, sizeof(err)),
			 0);
	FILE *f = open_memstream(&buf, &len);
	th_config_print(&cf, f);
	fclose(f);
	assert_null(strstr(buf, SECRET));
	assert_non_null(strstr(buf, "kafka.sasl.password = \"***\""));
	assert_non_null(strstr(buf, "kafka.sasl.username = \"alice\""));
	assert_non_null(strstr(buf, "schema_registry_url = \"https://reg:***@registry:8081\""));
	assert_non_null(strstr(buf, "batch_size = \"100000\""));
	free(buf);
	th_config_free(&cf);
}

static void log_registry_error(void *ctx)
{
	/* what a failed registration logs: libcurl's error may quote the URL */
	th_log_err("registry", "POST %s: connection refused", (const char *)ctx);
}

static void test_registry_url_password_is_a_secret(void **state)
{
	struct th_config cf;
	char err[512];
	const char *url = "https://reg:" SECRET "@registry:8081";
	const char *text = "brokers = \"b:9092\"\nschema_registry_url = \"https://reg:" SECRET
			   "@registry:8081\"\n";
	(void)state;
	/* a file holding it must be private, as one holding kafka.sasl.password */
	th_config_init(&cf);
	const char *p = write_file("registry-open.conf", text, 0644);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), TH_ECONFIG);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(strstr(err, SECRET));
	th_config_free(&cf);
	th_log_clear_secrets();

	th_config_init(&cf);
	p = write_file("registry-private.conf", text, 0600);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), 0);
	assert_string_equal(cf.schema_registry_url, url);
	/* and no log line shows it, the rest of the URL kept */
	char *out = capture_stderr(log_registry_error, (void *)url);
	assert_null(strstr(out, SECRET));
	assert_non_null(strstr(out, "https://reg:***@registry:8081"));
	free(out);
	th_config_free(&cf);
	th_log_clear_secrets();

	/* a URL without a password holds no secret: any mode */
	th_config_init(&cf);
	p = write_file("registry-plain.conf",
		       "schema_registry_url = \"https://reg@registry:8081/a:b@c\"\n", 0644);
	assert_int_equal(th_config_load(&cf, p, err, sizeof(err)), 0);
	th_config_free(&cf);
}

static void log_some(void *ctx)
{
	(void)ctx;
	th_log_info("test", "plain \"quoted\" line\twith tab");
	th_log_warn("test", "broker said: authentication failed for password %s", SECRET);
	th_log_debug("test", "not shown at info");
}

static void test_log_json_and_masking(void **state)
{
	char err[256];
	(void)state;
	th_log_add_secret(SECRET);
	assert_int_equal(th_log_configure("info", "json", err, sizeof(err)), 0);
	char *out = capture_stderr(log_some, NULL);
	assert_null(strstr(out, SECRET));
	assert_null(strstr(out, "not shown"));
	/* two JSON objects, one per line, with the agreed keys */
	assert_non_null(strstr(out, "\"level\":\"info\",\"msg\":\"plain \\\"quoted\\\" line\\twith tab\""));
	assert_non_null(strstr(out, "\"level\":\"warn\""));
	assert_non_null(strstr(out, "password ***\""));
	assert_non_null(strstr(out, "\"fields\":{\"component\":\"test\"}}\n"));
	assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
	free(out);

	assert_int_equal(th_log_configure("warn", "text", err, sizeof(err)), 0);
	out = capture_stderr(log_some, NULL);
	assert_null(strstr(out, "plain")); /* info is below warn */
	assert_non_null(strstr(out, "WARN [test] broker said"));
	assert_null(strstr(out, SECRET));
	free(out);
	assert_int_equal(th_log_configure("loud", NULL, err, sizeof(err)), TH_ECONFIG);
	th_log_configure("info", "text", err, sizeof(err));
	th_log_clear_secrets();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_overrides),
		cmocka_unit_test(test_env_unknown_or_bad),
		cmocka_unit_test(test_secret_keys),
		cmocka_unit_test(test_private_file_rule),
		cmocka_unit_test(test_parse_error_never_quotes_the_line),
		cmocka_unit_test(test_print_masks_secrets),
		cmocka_unit_test(test_registry_url_password_is_a_secret),
		cmocka_unit_test(test_log_json_and_masking),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
