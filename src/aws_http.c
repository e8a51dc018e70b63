/*
 * Signed AWS requests over libcurl (CURLOPT_AWS_SIGV4) and the helpers around
 * them: endpoints, S3 object URLs, error answers, SQS's JSON protocol. See
 * include/trailhound/aws.h for the signing rules curl 7.88.1 needs.
 */
#define _GNU_SOURCE /* memmem */
#include "trailhound/aws.h"
#include "trailhound/common.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MEM_DEFAULT_MAX ((uint64_t)64 << 20)

int th_aws_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : TH_EIO;
}

struct xfer {
	const struct th_aws_req *rq;
	struct th_aws_resp *resp;
	size_t cap;
	uint64_t max;
	bool too_big, write_failed;
	CURL *curl;
	int to_file; /* -1 undecided, 0 memory, 1 rq->out_fd */
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	if (x->resp->bytes + n > x->max) {
		x->too_big = true;
		return 0; /* curl fails the transfer */
	}
	x->resp->bytes += n;
	if (x->to_file < 0) {
		/* only a successful answer goes to the file; an error is small XML
		 * that parse_error() reads from memory */
		long st = 0;
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &st);
		x->to_file = x->rq->out_fd >= 0 && st < 300;
	}
	if (x->to_file) {
		size_t done = 0;
		while (done < n) {
			ssize_t w = write(x->rq->out_fd, data + done, n - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				x->write_failed = true;
				return 0;
			}
			done += (size_t)w;
		}
		return n;
	}
	if (x->resp->len + n + 1 > x->cap) {
		size_t ncap = x->cap ? x->cap : 4096;
		while (ncap < x->resp->len + n + 1)
			ncap *= 2;
		char *nb = realloc(x->resp->body, ncap);
		if (!nb)
			return 0;
		x->resp->body = nb;
		x->cap = ncap;
	}
	memcpy(x->resp->body + x->resp->len, data, n);
	x->resp->len += n;
	x->resp->body[x->resp->len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	static const char breg[] = "x-amz-bucket-region:";
	if (n > sizeof(breg) - 1 && strncasecmp(data, breg, sizeof(breg) - 1) == 0) {
		const char *p = data + sizeof(breg) - 1, *e = data + n;
		while (p < e && *p == ' ')
			p++;
		while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
			e--;
		snprintf(x->resp->region, sizeof(x->resp->region), "%.*s", (int)(e - p), p);
	}
	if (n > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		const char *p = data + 5, *e = data + n;
		while (p < e && (*p == ' ' || *p == '"'))
			p++;
		while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '"'))
			e--;
		size_t len = (size_t)(e - p);
		if (len >= sizeof(x->resp->etag))
			len = sizeof(x->resp->etag) - 1;
		memcpy(x->resp->etag, p, len);
		x->resp->etag[len] = '\0';
	}
	return n;
}

static int on_progress(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	struct xfer *x = ud;
	(void)dlt;
	(void)dln;
	(void)ult;
	(void)uln;
	return x->rq->progress ? x->rq->progress(x->rq->progress_ctx) : 0;
}

/* AWS's error answer: XML (<Code>, <Message>) or JSON (__type, message). */
static void parse_error(struct th_aws_resp *r)
{
	if (!r->body || !r->len)
		return;
	const char *end = r->body + r->len;
	if (r->body[0] == '{') {
		char type[256], msg[512], msg2[512];
		char *outs[] = {type, msg, msg2};
		const char *names[] = {"__type", "message", "Message"};
		size_t sizes[] = {sizeof(type), sizeof(msg), sizeof(msg2)};
		if (th_aws_json_strings(r->body, r->len, names, outs, sizes, 3) == 0) {
			/* "com.amazonaws.sqs#QueueDoesNotExist": the part after '#' */
			const char *h = strrchr(type, '#');
			snprintf(r->code, sizeof(r->code), "%.127s", h ? h + 1 : type);
			snprintf(r->message, sizeof(r->message), "%s", msg[0] ? msg : msg2);
		}
		return;
	}
	th_aws_xml_text(r->body, end, "Code", r->code, sizeof(r->code));
	th_aws_xml_text(r->body, end, "Message", r->message, sizeof(r->message));
	if (!r->region[0]) {
		/* a redirect names the bucket's endpoint; a request signed for the
		 * wrong region (AuthorizationHeaderMalformed) the region itself */
		char ep[300];
		if (th_aws_xml_text(r->body, end, "Endpoint", ep, sizeof(ep)))
			th_aws_s3_endpoint_region(ep, r->region, sizeof(r->region));
		else
			th_aws_xml_text(r->body, end, "Region", r->region, sizeof(r->region));
	}
}

int th_aws_s3_endpoint_region(const char *host, char *out, size_t out_size)
{
	/* the labels after "s3." or "s3-" (the bucket's own name may hold
	 * either: the last one before amazonaws wins) */
	const char *az = strstr(host, ".amazonaws.com"), *p = NULL;
	if (out_size)
		out[0] = '\0';
	if (!az)
		return TH_ENOTFOUND;
	for (const char *q = host; q < az; q++)
		if ((q == host || q[-1] == '.') && strncmp(q, "s3", 2) == 0 &&
		    (q[2] == '.' || q[2] == '-'))
			p = q + 3;
	if (!p)
		return TH_ENOTFOUND;
	if (p > az) /* "s3.amazonaws.com": the global endpoint */
		p = az;
	if (strncmp(p, "dualstack.", 10) == 0)
		p += 10;
	const char *e = p < az ? strchr(p, '.') : az;
	if (!e || e > az)
		e = az;
	/* s3-external-1: the old name of us-east-1's endpoint */
	if (p == e || (e - p == 10 && strncmp(p, "external-1", 10) == 0))
		snprintf(out, out_size, "us-east-1");
	else
		snprintf(out, out_size, "%.*s", (int)(e - p), p);
	return 0;
}

int th_aws_request(const struct th_aws_req *rq, struct th_aws_resp *resp, char *errstr,
		   size_t errstr_size)
{
	CURL *curl = NULL;
	struct curl_slist *hdrs = NULL;
	char sig[128], hbuf[4300];
	char cerr[CURL_ERROR_SIZE] = "";
	struct xfer x = {rq, resp, 0, rq->max_bytes ? rq->max_bytes : MEM_DEFAULT_MAX, false,
			 false, NULL, -1};
	int ret = 0;

	memset(resp, 0, sizeof(*resp));
	if (!(curl = curl_easy_init())) {
		ret = TH_ENOMEM;
		goto cleanup;
	}
	x.curl = curl;
	curl_easy_setopt(curl, CURLOPT_URL, rq->url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, rq->timeout_s ? rq->timeout_s : 300L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	/* an S3 object can be gigabytes; ask curl to give up on a stalled one */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
	if (rq->progress) {
		curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &x);
	}
	if (strcmp(rq->method, "POST") == 0) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
		if (rq->content_type) {
			snprintf(hbuf, sizeof(hbuf), "Content-Type: %s", rq->content_type);
			hdrs = curl_slist_append(hdrs, hbuf);
		}
	}
	else if (strcmp(rq->method, "GET") != 0)
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq->method); /* IMDSv2's PUT */
	if (rq->amz_target) {
		snprintf(hbuf, sizeof(hbuf), "X-Amz-Target: %s", rq->amz_target);
		hdrs = curl_slist_append(hdrs, hbuf);
	}
	if (rq->extra_header)
		hdrs = curl_slist_append(hdrs, rq->extra_header);
	if (rq->creds && rq->service) {
		/* explicit provider, region and service: curl 7.88 guesses them from
		 * the host name otherwise, which is wrong for custom endpoints */
		snprintf(sig, sizeof(sig), "aws:amz:%s:%s", rq->region, rq->service);
		curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sig);
		curl_easy_setopt(curl, CURLOPT_USERNAME, rq->creds->akid);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, rq->creds->secret);
		if (strcmp(rq->service, "s3") == 0)
			hdrs = curl_slist_append(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
		if (rq->creds->token[0]) {
			snprintf(hbuf, sizeof(hbuf), "X-Amz-Security-Token: %s", rq->creds->token);
			hdrs = curl_slist_append(hdrs, hbuf);
		}
	}
	if (hdrs)
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);

	CURLcode cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
	if (x.too_big) {
		th_errstr(errstr, errstr_size, "answer over %" PRIu64 " bytes", x.max);
		ret = TH_ETOOBIG;
		goto cleanup;
	}
	if (cc != CURLE_OK) {
		th_errstr(errstr, errstr_size, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
		ret = TH_EIO;
		goto cleanup;
	}
	if (resp->status >= 300)
		parse_error(resp);
cleanup:
	curl_slist_free_all(hdrs);
	if (curl)
		curl_easy_cleanup(curl);
	/* hbuf held the token; sig nothing secret */
	memset(hbuf, 0, sizeof(hbuf));
	return ret;
}

void th_aws_resp_free(struct th_aws_resp *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

/* The partition's DNS suffix: the China regions (cn-north-1, cn-northwest-1)
 * answer under amazonaws.com.cn ("Endpoints and ARNs for Amazon Web Services in
 * China"), every other region under amazonaws.com */
static const char *dns_suffix(const char *region)
{
	return strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
}

void th_aws_endpoint(const struct th_aws_target *t, const char *service, char *out,
		     size_t out_size)
{
	if (t->endpoint && t->endpoint[0]) {
		size_t n = strlen(t->endpoint);
		while (n && t->endpoint[n - 1] == '/')
			n--;
		snprintf(out, out_size, "%.*s", (int)n, t->endpoint);
	} else {
		snprintf(out, out_size, "https://%s.%s.%s", service, t->region,
			 dns_suffix(t->region));
	}
}

/* Percent-encode as SigV4's canonical URI wants it: unreserved kept, '/' kept
 * when keep_slash. Returns 0 or TH_ETOOBIG. */
static int uri_encode(const char *in, bool keep_slash, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			    *p == '~' || (keep_slash && *p == '/');
		if (o + (keep ? 1 : 3) >= out_size)
			return TH_ETOOBIG;
		if (keep) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

int th_aws_s3_url(const struct th_aws_target *t, const char *bucket, const char *key,
		  char *out, size_t out_size)
{
	char enc[4096] = "";
	int n;
	if (key && uri_encode(key, true, enc, sizeof(enc)))
		return TH_ETOOBIG;
	/* path-style on a custom endpoint, and for a bucket name with a dot: S3's
	 * TLS wildcard certificate (*.s3.REGION.amazonaws.com) matches only bucket
	 * names without one (S3 User Guide, "Virtual hosting of general purpose
	 * buckets"), so my.trail.logs.s3.… fails the TLS check */
	if ((t->endpoint && t->endpoint[0]) || strchr(bucket, '.')) {
		char ep[512];
		th_aws_endpoint(t, "s3", ep, sizeof(ep));
		n = snprintf(out, out_size, "%s/%s/%s", ep, bucket, enc);
	} else {
		n = snprintf(out, out_size, "https://%s.s3.%s.%s/%s", bucket, t->region,
			     dns_suffix(t->region), enc);
	}
	return n < 0 || (size_t)n >= out_size ? TH_ETOOBIG : 0;
}

int th_aws_uri_encode(const char *in, char *out, size_t out_size)
{
	return uri_encode(in, false, out, out_size);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void th_aws_s3_key_decode(const char *in, char *out, size_t out_size)
{
	size_t o = 0;
	if (!out_size)
		return;
	for (const char *p = in; *p && o + 1 < out_size; p++) {
		int h, l;
		if (*p == '+') {
			out[o++] = ' ';
		} else if (*p == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
			out[o++] = (char)(h * 16 + l);
			p += 2;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

const char *th_aws_xml_text(const char *p, const char *end, const char *tag, char *out,
			    size_t out_size)
{
	char open[96], close[96];
	size_t tl = strlen(tag);
	if (out_size)
		out[0] = '\0';
	if (tl + 4 > sizeof(open))
		return NULL;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *s = memmem(p, (size_t)(end - p), open, tl + 2);
	if (!s)
		return NULL;
	s += tl + 2;
	const char *e = memmem(s, (size_t)(end - s), close, tl + 3);
	if (!e)
		return NULL;
	size_t o = 0;
	static const struct {
		const char *ent;
		char c;
	} ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
	for (const char *q = s; q < e && o + 1 < out_size; q++) {
		char c = *q;
		if (c == '&') {
			for (size_t i = 0; i < TH_ARRAY_SIZE(ents); i++) {
				size_t el = strlen(ents[i].ent);
				if ((size_t)(e - q) >= el && memcmp(q, ents[i].ent, el) == 0) {
					c = ents[i].c;
					q += el - 1;
					break;
				}
			}
		}
		out[o++] = c;
	}
	if (out_size)
		out[o] = '\0';
	return e + tl + 3;
}

bool th_aws_auth_error(const char *code, long status)
{
	static const char *const codes[] = {
		"SignatureDoesNotMatch", "InvalidClientTokenId", "InvalidAccessKeyId",
		"IncompleteSignature",   "UnrecognizedClientException", "AccessDenied",
		"AccessDeniedException", "MissingAuthenticationToken", "InvalidSecurity",
		"InvalidToken",          "AuthFailure", "AuthorizationHeaderMalformed"};
	for (size_t i = 0; i < TH_ARRAY_SIZE(codes); i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return status == 403 && !code[0];
}

bool th_aws_transient(int rc, long status, const char *code)
{
	/* S3's codes for "not now" (Amazon S3 API Reference, "Error responses"):
	 * InternalError and ServiceUnavailable/SlowDown come as 500/503, and a
	 * connection that idled too long as 400 RequestTimeout */
	if (rc == TH_EIO)
		return true;
	if (rc)
		return false;
	return status >= 500 || status == 429 || strcmp(code, "RequestTimeout") == 0 ||
	       strcmp(code, "SlowDown") == 0 || strcmp(code, "ThrottlingException") == 0;
}

bool th_aws_expired_error(const char *code)
{
	return strcmp(code, "ExpiredToken") == 0 || strcmp(code, "ExpiredTokenException") == 0 ||
	       strcmp(code, "RequestExpired") == 0;
}

int th_sqs_call(struct th_sqs *q, const char *action, const char *json,
		struct th_aws_resp *resp, char *errstr, size_t errstr_size)
{
	char url[1024], target[96];
	const struct th_aws_creds *cr;
	int rc;
	/* POST to the queue's origin, no query string: curl 7.88 signs a query
	 * string in an order AWS does not accept */
	const char *qu = q->queue_url, *hs = strstr(qu, "://");
	const char *slash = hs ? strchr(hs + 3, '/') : NULL;
	int olen = slash ? (int)(slash - qu) : (int)strlen(qu);
	snprintf(url, sizeof(url), "%.*s/", olen, qu);
	snprintf(target, sizeof(target), "AmazonSQS.%s", action);
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = th_aws_creds_get(q->creds, attempt > 0, &cr, errstr, errstr_size)))
			return rc;
		struct th_aws_req rq = {.method = "POST",
					.url = url,
					.service = "sqs",
					.region = q->t->region,
					.creds = cr,
					.content_type = "application/x-amz-json-1.0",
					.amz_target = target,
					.body = json,
					.body_len = strlen(json),
					.out_fd = -1,
					.timeout_s = 60};
		if ((rc = th_aws_request(&rq, resp, errstr, errstr_size)))
			return rc;
		if (resp->status == 200)
			return 0;
		if (attempt == 0 && th_aws_expired_error(resp->code)) {
			th_aws_resp_free(resp);
			continue; /* refresh the credentials once */
		}
		break;
	}
	th_errstr(errstr, errstr_size, "SQS %s: HTTP %ld %s%s%s", action, resp->status,
		  resp->code[0] ? resp->code : "(no error code)", resp->message[0] ? ": " : "",
		  resp->message);
	rc = th_aws_auth_error(resp->code, resp->status) ? TH_ECONFIG : TH_EIO;
	th_aws_resp_free(resp);
	return rc;
}
