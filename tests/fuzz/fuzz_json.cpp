// JSON validity oracle for the fuzz targets, in C++ because simdjson is
// (the same library the parser uses, so "valid" means what a strict
// consumer of our output would accept: well-formed JSON, valid UTF-8).
#include <simdjson.h>

#include "fuzz_common.h"

extern "C" bool fuzz_json_valid(const char *s, size_t n)
{
	static simdjson::dom::parser *parser = new simdjson::dom::parser();
	simdjson::dom::element doc;
	// realloc_if_needed: the input has no padding, simdjson copies it.
	return parser->parse(s, n, true).get(doc) == simdjson::SUCCESS;
}
