/*
 * Client configurations (kafka_conf.h): our defaults first, then kafka.*
 * from the settings, which may override them. kafka.X goes to every client,
 * kafka.consumer.X only to consumers, kafka.producer.X only to producers
 * (librdkafka warns about properties that do not apply to a client, e.g.
 * group.instance.id on a producer).
 */
#include "trailhound/kafka_conf.h"

#include "trailhound/log.h"

rd_kafka_conf_t *th_kafka_conf_new(const struct th_config *cf, const char *scope,
				   const char *const *defaults, char *errstr, size_t errstr_size)
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
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}
