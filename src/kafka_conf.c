/*
 * Client configurations (kafka_conf.h): our defaults first, then kafka.*
 * from the settings, which may override them. kafka.X goes to every client,
 * kafka.consumer.X only to consumers, kafka.producer.X only to producers
 * (librdkafka warns about properties that do not apply to a client, e.g.
 * group.instance.id on a producer).
 */
#include "trailhound/kafka_conf.h"

#include <string.h>
#include <time.h>

#include "trailhound/log.h"

/* The kafka.* setting of this scope that names property k (the last one:
 * later settings override earlier ones), written as the user wrote it. */
static int user_setting(const struct th_config *cf, const char *scope, const char *k)
{
	int found = -1;
	for (int i = 0; i < cf->n_kafka; i++) {
		const char *uk = th_config_kafka_key(cf, i, scope);
		if (uk && strcmp(uk, k) == 0)
			found = i;
	}
	return found;
}

rd_kafka_conf_t *th_kafka_conf_new_locked(const struct th_config *cf, const char *scope,
					  const char *const *defaults,
					  const char *const *locked, const char *why,
					  char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, th_log_rdkafka);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", cf->brokers, errstr, errstr_size))
		goto fail;
	for (int i = 0; defaults && defaults[i]; i += 2)
		if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size))
			goto fail;
	for (int i = 0; i < cf->n_kafka; i++) {
		const char *k = th_config_kafka_key(cf, i, scope);
		if (k && rd_kafka_conf_set(conf, k, cf->kafka_values[i], errstr, errstr_size))
			goto fail;
	}
	/* Compared as librdkafka reads them ("0" is false), after every
	 * setting: a kafka.* that changes one of these would not fail, the
	 * client would silently do something else (commit offsets outside
	 * the transactions, read aborted records, never see an end). */
	for (int i = 0; locked && locked[i]; i += 2) {
		char have[128];
		size_t n = sizeof(have);
		if (rd_kafka_conf_get(conf, locked[i], have, &n) != RD_KAFKA_CONF_OK)
			have[0] = '\0';
		if (strcmp(have, locked[i + 1]) == 0)
			continue;
		int u = user_setting(cf, scope, locked[i]);
		if (u >= 0)
			snprintf(errstr, errstr_size,
				 "kafka.%s = \"%s\": the %s client needs %s = %s (%s); remove the "
				 "setting",
				 cf->kafka_keys[u], cf->kafka_values[u], scope, locked[i],
				 locked[i + 1], why ? why : "required");
		else
			snprintf(errstr, errstr_size, "%s is \"%s\": the %s client needs %s (%s)",
				 locked[i], have, scope, locked[i + 1], why ? why : "required");
		goto fail;
	}
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

rd_kafka_conf_t *th_kafka_conf_new(const struct th_config *cf, const char *scope,
				   const char *const *defaults, char *errstr, size_t errstr_size)
{
	return th_kafka_conf_new_locked(cf, scope, defaults, NULL, NULL, errstr, errstr_size);
}

rd_kafka_resp_err_t th_kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
					int64_t *lo, int64_t *hi, int timeout_ms)
{
	/* ListOffsets' timestamps -2 and -1 ask for the earliest and the latest
	 * offset; one partition may not be named twice in a list, so two asks,
	 * within the one timeout */
	static const int64_t ask[2] = {-2 /* earliest */, -1 /* latest */};
	int64_t *out[2] = {lo, hi};
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 2; i++) {
		if (!out[i])
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long spent = (t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L;
		int left = timeout_ms - (int)spent;
		if (left <= 0)
			return RD_KAFKA_RESP_ERR__TIMED_OUT;
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
		if (!l)
			return RD_KAFKA_RESP_ERR__FAIL;
		rd_kafka_topic_partition_list_add(l, topic, partition)->offset = ask[i];
		rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, left);
		if (!err)
			err = l->elems[0].err;
		if (!err && l->elems[0].offset < 0)
			err = RD_KAFKA_RESP_ERR__NO_OFFSET;
		if (!err)
			*out[i] = l->elems[0].offset;
		rd_kafka_topic_partition_list_destroy(l);
		if (err)
			return err;
	}
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}
