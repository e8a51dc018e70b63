/*
 * libFuzzer target for the event parser, the first thing untrusted bytes
 * reach. Each input goes through both entry points: th_parser_feed() as one
 * Kafka message, and th_input_run() as a whole file (via a memfd), which adds
 * the framing, the resync rules and gzip detection. Every field of every
 * delivered event is read, so a dangling or unterminated string shows up
 * under ASan.
 *
 * No state survives a run: the parser, the input and the memfd are created
 * and destroyed per input, so a crash reproduces from its file alone (and
 * replay_main.c can run the saved corpus with any compiler).
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "trailhound/common.h"
#include "trailhound/event.h"
#include "trailhound/input.h"

/* Small enough that the too_large paths are reachable from small inputs. */
#define FUZZ_RECORD_MAX 4096
#define FUZZ_DOC_MAX (64 * 1024)

/* Reads the whole string; every string of a delivered event is valid UTF-8
 * (stage 1 validates the bytes, escapes decode to characters, a lone
 * surrogate escape to U+FFFD), so alerts built from it need no repair. */
static size_t touch(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (s && !th_utf8_valid(s, n))
		abort();
	return n;
}

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	size_t *sum = ctx;
	*sum += touch(ev->event_time) + touch(ev->event_id) + touch(ev->event_source) +
		touch(ev->event_name) + touch(ev->aws_region) + touch(ev->source_ip) +
		touch(ev->user_agent) + touch(ev->recipient_account_id) + touch(ev->error_code) +
		touch(ev->error_message) +
		touch(ev->vpc_endpoint_id) + touch(ev->vpc_endpoint_account_id) +
		touch(ev->ui.type) + touch(ev->ui.arn) + touch(ev->ui.account_id) +
		touch(ev->ui.access_key_id) + touch(ev->ui.invoked_by) + touch(ev->ui.principal_id) +
		touch(ev->ui.session_issuer_arn) + touch(ev->ui.creation_date) +
		touch(ev->req.role_arn) + touch(ev->req.role_session_name) + touch(ev->req.role) +
		touch(ev->req.function_name) + touch(ev->cred.access_key_id) +
		touch(ev->cred.expiration) + touch(th_event_account(ev)) +
		touch(th_event_session_name(ev));
	*sum += (size_t)ev->event_time_ms + (size_t)ev->ui.creation_ms + (size_t)ev->cred.expiration_ms;
	/* The required fields are present in every delivered event. */
	if (!ev->event_time || !ev->event_source || !ev->event_name || !ev->event_id)
		abort();
	/* The raw span is the record and lies within the input. */
	if (raw_len < 2 || raw[0] != '{' || raw[raw_len - 1] != '}')
		abort();
	*sum += (size_t)offset;
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	size_t *sum = ctx;
	if (why <= TH_REJECT_NONE || why >= TH_REJECT__COUNT || !detail)
		abort();
	*sum += strlen(detail) + strlen(th_reject_name(why)) + (size_t)offset;
	if (raw_len)
		*sum += (unsigned char)raw[0] + (unsigned char)raw[raw_len - 1];
}

static void run_feed(const uint8_t *data, size_t size, size_t *sum)
{
	struct th_parser *p = NULL;
	struct th_sink sink = {on_event, on_reject, sum};
	char *buf = malloc(size + TH_PARSE_PADDING);

	if (!buf || th_parser_new(&p, FUZZ_RECORD_MAX) != 0)
		goto cleanup;
	memcpy(buf, data, size);
	memset(buf + size, 0, TH_PARSE_PADDING);
	(void)th_parser_feed(p, buf, size, 0, &sink);
cleanup:
	th_parser_destroy(p);
	free(buf);
}

static void run_input(const uint8_t *data, size_t size, size_t *sum)
{
	struct th_parser *p = NULL;
	struct th_input *in = NULL;
	struct th_sink sink = {on_event, on_reject, sum};
	char path[64], errstr[128];
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto cleanup;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (th_parser_new(&p, FUZZ_RECORD_MAX) != 0 ||
	    th_input_open(&in, path, FUZZ_DOC_MAX, errstr, sizeof(errstr)) != 0)
		goto cleanup;
	(void)th_input_run(in, p, &sink);
cleanup:
	th_input_close(in);
	th_parser_destroy(p);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sum = 0;

	run_feed(data, size, &sum);
	run_input(data, size, &sum);
	/* Keep the reads from being optimized away. */
	__asm__ volatile("" : : "r"(sum) : "memory");
	return 0;
}
