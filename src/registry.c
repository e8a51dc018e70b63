/*
 * The one Confluent Schema Registry call trailhound needs: register the
 * alert schema under a subject and learn its id (for the Avro framing), over
 * libcurl, at setup time only. Kept apart from the Avro encoder so the
 * encoder has no HTTP in it and the tests of either need not know the other.
 */
#include "trailhound/registry.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "trailhound/alert.h"
#include "trailhound/codec.h"

#define REPLY_MAX (64u << 10)
/* The registry's answers: ask for 5 s to connect, 10 s for the whole call. */
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 10000L

static size_t on_reply(char *p, size_t size, size_t n, void *ctx)
{
	struct th_wbuf *w = ctx;
	size_t len = size * n;
	/* Returning less than len makes curl fail the transfer: a registry
	 * reply is a few bytes, so anything huge is not one. */
	if (w->len + len > REPLY_MAX)
		return 0;
	th_put_bytes(w, p, len);
	return w->oom ? 0 : len;
}

static size_t skip_ws(const char *p, size_t i, size_t n)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/*
 * The value of the top-level "id" member of a JSON object, without a JSON
 * library: strings are skipped whole (so an "id" inside a message or a
 * nested object does not count) and the value must be a non-negative
 * integer that fits an int32.
 */
static int parse_id(const char *p, size_t n, int32_t *id)
{
	int depth = 0;
	size_t i = 0;

	while (i < n) {
		char c = p[i];
		if (c == '{' || c == '[') {
			depth++;
			i++;
			continue;
		}
		if (c == '}' || c == ']') {
			depth--;
			i++;
			continue;
		}
		if (c != '"') {
			i++;
			continue;
		}
		size_t start = ++i;
		while (i < n && p[i] != '"')
			i += p[i] == '\\' ? 2 : 1;
		if (i >= n)
			return TH_EPARSE;
		size_t end = i++;
		if (depth != 1 || end - start != 2 || memcmp(p + start, "id", 2) != 0)
			continue;
		i = skip_ws(p, i, n);
		if (i >= n || p[i] != ':')
			continue; /* "id" as a value, not a key */
		i = skip_ws(p, i + 1, n);
		int64_t v = 0;
		size_t d0 = i;
		while (i < n && p[i] >= '0' && p[i] <= '9' && v <= INT32_MAX)
			v = v * 10 + (p[i++] - '0');
		/* a fraction, exponent or more digits: not an int32 */
		if (i == d0 || v > INT32_MAX ||
		    (i < n && (p[i] == '.' || p[i] == 'e' || p[i] == 'E' ||
			       (p[i] >= '0' && p[i] <= '9'))))
			return TH_EPARSE;
		*id = (int32_t)v;
		return 0;
	}
	return TH_EPARSE;
}

/* Printable prefix of a reply for an error message. */
static void reply_excerpt(const struct th_wbuf *r, char *out, size_t size)
{
	size_t j = 0;
	for (size_t i = 0; i < r->len && j + 1 < size && i < 200; i++)
		out[j++] = (r->p[i] >= 0x20 && r->p[i] < 0x7f) ? (char)r->p[i] : ' ';
	if (size)
		out[j] = '\0';
}

int th_registry_register(const char *registry_url, const char *subject, const char *schema_json,
		       int32_t *id, char *errstr, size_t errstr_size)
{
	struct th_wbuf url = {0}, body = {0}, reply = {0};
	struct curl_slist *hdrs = NULL;
	char cerr[CURL_ERROR_SIZE] = "", excerpt[256];
	char *esc = NULL;
	long status = 0;
	CURL *curl = NULL;
	CURLcode cc;
	int rc = TH_ECONFIG;
	bool global = false;

	if (!registry_url || !*registry_url || !subject || !schema_json) {
		snprintf(errstr, errstr_size, "schema registry: no URL, subject or schema");
		return TH_ECONFIG;
	}
	/* Setup-time only, so init and clean up around the one request rather
	 * than burden every caller with curl's process-wide state. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(errstr, errstr_size, "schema registry: libcurl initialisation failed");
		goto cleanup;
	}
	global = true;
	if (!(curl = curl_easy_init()) || !(esc = curl_easy_escape(curl, subject, 0))) {
		snprintf(errstr, errstr_size, "schema registry: out of memory");
		rc = TH_ENOMEM;
		goto cleanup;
	}
	size_t ul = strlen(registry_url);
	while (ul && registry_url[ul - 1] == '/')
		ul--;
	th_put_bytes(&url, registry_url, ul);
	th_put_bytes(&url, "/subjects/", 10);
	th_put_bytes(&url, esc, strlen(esc));
	th_put_bytes(&url, "/versions", 10); /* with the NUL */
	th_put_bytes(&body, "{\"schema\":", 10);
	th_json_put_string(&body, schema_json);
	th_put_u8(&body, '}');
	hdrs = curl_slist_append(hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
	if (hdrs)
		hdrs = curl_slist_append(
			hdrs, "Accept: application/vnd.schemaregistry.v1+json, application/json");
	if (url.oom || body.oom || !hdrs) {
		snprintf(errstr, errstr_size, "schema registry: out of memory");
		rc = TH_ENOMEM;
		goto cleanup;
	}
	curl_easy_setopt(curl, CURLOPT_URL, (const char *)url.p);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, (const char *)body.p);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_reply);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
	/* No SIGALRM-based DNS timeouts: the caller may have threads. */
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	if ((cc = curl_easy_perform(curl)) != CURLE_OK) {
		snprintf(errstr, errstr_size, "schema registry: registering subject %s: %s",
			 subject, cerr[0] ? cerr : curl_easy_strerror(cc));
		goto cleanup;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	reply_excerpt(&reply, excerpt, sizeof(excerpt));
	if (status < 200 || status > 299) {
		snprintf(errstr, errstr_size,
			 "schema registry: registering subject %s: HTTP %ld: %s", subject, status,
			 excerpt);
		goto cleanup;
	}
	if (parse_id((const char *)reply.p, reply.len, id)) {
		snprintf(errstr, errstr_size,
			 "schema registry: registering subject %s: no \"id\" in the reply: %s",
			 subject, excerpt);
		goto cleanup;
	}
	rc = 0;
cleanup:
	curl_slist_free_all(hdrs);
	curl_free(esc);
	if (curl)
		curl_easy_cleanup(curl);
	if (global)
		curl_global_cleanup();
	th_wbuf_free(&url);
	th_wbuf_free(&body);
	th_wbuf_free(&reply);
	return rc;
}
