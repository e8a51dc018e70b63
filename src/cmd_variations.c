/*
 * `trailhound variations`: the variation table as the binary has it. The
 * one names table: the schema doc check, docs/detections.md's check and the
 * Python tools (tests/run_cases.py, tests/cases/make_cases.py,
 * tools/gen_sample.py) read it from here instead of keeping copies.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "trailhound/alert.h"
#include "trailhound/codec.h"
#include "trailhound/variation.h"

static void put_json(const struct th_variation *vars, size_t n, FILE *out)
{
	struct th_wbuf w = {0};
	char num[32];
	TH_PUT_LIT(&w, "[");
	for (size_t i = 0; i < n; i++) {
		const struct th_variation *v = &vars[i];
		int len = snprintf(num, sizeof(num), "%s\n{\"id\":%d", i ? "," : "", v->id);
		th_put_bytes(&w, num, (size_t)len);
		TH_PUT_LIT(&w, ",\"name\":");
		th_json_put_string(&w, v->name);
		TH_PUT_LIT(&w, ",\"severity\":");
		th_json_put_string(&w, v->severity);
		TH_PUT_LIT(&w, ",\"tactic\":");
		th_json_put_string(&w, v->tactic);
		TH_PUT_LIT(&w, ",\"credential\":");
		th_json_put_string(&w, th_cred_class_name(v->cred));
		if (v->upgradable)
			TH_PUT_LIT(&w, ",\"upgradable\":true");
		else
			TH_PUT_LIT(&w, ",\"upgradable\":false");
		TH_PUT_LIT(&w, ",\"description\":");
		th_json_put_string(&w, v->description);
		TH_PUT_LIT(&w, "}");
	}
	TH_PUT_LIT(&w, "\n]\n");
	fwrite(w.p, 1, w.len, out);
	th_wbuf_free(&w);
}

int th_cmd_variations(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("Usage: trailhound variations [--json]\n"
			       "\n"
			       "The detection variations, in the order they are tried (the first\n"
			       "that matches wins): id, severity, the credential kind each judges\n"
			       "(token: a function's own credentials; role-session: a Lambda role\n"
			       "assumed by another identity), whether an inside use of the key later\n"
			       "upgrades its alert, and its alert name.\n");
			return TH_EXIT_OK;
		} else {
			fprintf(stderr, "trailhound variations: unknown option '%s'\n", argv[i]);
			return TH_EXIT_USAGE;
		}
	}
	if (json) {
		put_json(th_variations, th_variations_count, stdout);
		return TH_EXIT_OK;
	}
	for (size_t i = 0; i < th_variations_count; i++) {
		const struct th_variation *v = &th_variations[i];
		printf("%2d  %-13s  %-12s  %-10s  %s\n", v->id, v->severity,
		       th_cred_class_name(v->cred), v->upgradable ? "upgradable" : "-", v->name);
	}
	return TH_EXIT_OK;
}
