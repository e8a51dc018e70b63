/*
 * librdkafka statistics JSON → consumer lag per partition, brokers up
 * (metrics_stats.h). The document's shape is librdkafka's STATISTICS.md:
 * topics.<name>.partitions.<id>.consumer_lag, brokers.<name>.state.
 */
#include "metrics_stats.h"

#include <cstdlib>
#include <string>

#include <simdjson.h>

#include "trailhound/common.h"

extern "C" int th_stats_parse(const char *json, size_t len, th_stats_lag_cb *cb, void *ctx,
			      int *brokers_up)
{
	try {
		simdjson::dom::parser parser;
		simdjson::dom::object root;
		if (parser.parse(json, len).get(root))
			return TH_EPARSE;
		int up = 0;
		simdjson::dom::object brokers;
		if (!root["brokers"].get(brokers)) {
			for (auto b : brokers) {
				std::string_view state;
				if (!b.value["state"].get(state) && state == "UP")
					up++;
			}
		}
		if (brokers_up)
			*brokers_up = up;
		simdjson::dom::object topics;
		if (root["topics"].get(topics))
			return 0; /* no topic yet (not subscribed, or no metadata) */
		for (auto t : topics) {
			std::string topic(t.key);
			simdjson::dom::object parts;
			if (t.value["partitions"].get(parts))
				continue;
			for (auto p : parts) {
				std::string id(p.key);
				char *end = nullptr;
				long part = std::strtol(id.c_str(), &end, 10);
				int64_t lag;
				/* -1 is librdkafka's internal UA partition */
				if (*end || part < 0 || part > INT32_MAX)
					continue;
				/* consumer_lag_stored: behind the stored offset, which
				 * the worker sets to what its transactions committed;
				 * consumer_lag counts from offsets the consumer itself
				 * committed (never, here) */
				int64_t lo = -1, ls = -1;
				if (p.value["consumer_lag_stored"].get(lag) || lag < 0)
					if (p.value["consumer_lag"].get(lag) || lag < 0)
						lag = -1;
				if (lag < 0 && !p.value["lo_offset"].get(lo) &&
				    !p.value["ls_offset"].get(ls) && lo >= 0 && ls >= lo &&
				    !p.value["fetch_state"].get_string().error() &&
				    p.value["fetch_state"].get_string().value() == "active")
					/* nothing committed yet: everything from the start
					 * (auto.offset.reset earliest) is still to do */
					lag = ls - lo;
				if (lag < 0)
					continue;
				cb(ctx, topic.c_str(), (int32_t)part, lag);
			}
		}
		return 0;
	} catch (const std::bad_alloc &) {
		return TH_ENOMEM;
	}
}
