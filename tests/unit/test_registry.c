/*
 * Tests for registry.c, the Schema Registry client, without a registry: the
 * failures that must be configuration errors at start-up (no URL, nothing
 * listening, a scheme other than http(s)). Registering against a live
 * registry is covered by the Kafka tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "trailhound/registry.h"

static char errstr[512];

static void test_registry_unreachable_is_a_config_error(void **state)
{
	int32_t id = -1;
	(void)state;
	/* Port 1 on loopback: refused at once, no network needed. */
	assert_int_equal(th_registry_register("http://127.0.0.1:1", "t-value", "\"string\"", &id,
					    errstr, sizeof(errstr)),
			 TH_ECONFIG);
	assert_non_null(strstr(errstr, "schema registry"));
	assert_int_equal(id, -1);
	assert_int_equal(th_registry_register("", "t-value", "\"string\"", &id, errstr,
					    sizeof(errstr)),
			 TH_ECONFIG);
	/* Only http(s): a file:// URL must not read local files. */
	assert_int_equal(th_registry_register("file:///etc", "passwd", "\"string\"", &id, errstr,
					    sizeof(errstr)),
			 TH_ECONFIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_unreachable_is_a_config_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
