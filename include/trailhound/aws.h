/*
 * AWS without an SDK: signed HTTP requests through libcurl's CURLOPT_AWS_SIGV4,
 * the credential chain (environment, web identity, profile file, container
 * endpoint, EC2 IMDSv2) and the few S3, SQS and STS calls the bridge makes.
 *
 * Signing (curl 7.88.1 as Debian 12 ships it signs correctly only this way):
 * region and service are always passed ("aws:amz:REGION:SERVICE"); S3 GETs and
 * lists send `x-amz-content-sha256: UNSIGNED-PAYLOAD`; every SQS call is a POST
 * of the JSON protocol without a query string; X-Amz-Date and Authorization
 * are left to curl; temporary credentials add X-Amz-Security-Token.
 *
 * Secrets (secret key, session token, web identity token) are never logged and
 * never copied into an errstr.
 *
 * Ownership: th_aws_resp_free() releases a response's body; th_aws_creds_*
 * objects are _new/_destroy pairs; strings passed in are borrowed.
 */
#ifndef TRAILHOUND_AWS_H
#define TRAILHOUND_AWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct th_aws_creds {
	char akid[128];
	char secret[128];
	char token[4096]; /* "" for long-term keys */
	int64_t expires_ms; /* wall clock, 0 = does not expire */
	char source[32];    /* "environment", "profile", "web-identity", ... */
};

/* Where requests go: the region, and a custom endpoint (moto, MinIO, a VPC
 * endpoint) that then serves every service with path-style S3 addressing. */
struct th_aws_target {
	const char *region;
	const char *endpoint; /* NULL or "" = AWS's own per-service endpoints */
};

struct th_aws_resp {
	long status;            /* HTTP status; 0 when no response arrived */
	char *body;             /* NUL-terminated; NULL when written to a file */
	size_t len;
	uint64_t bytes;         /* body bytes received (file or memory) */
	char etag[160];         /* the ETag header, quotes removed */
	char code[128];         /* AWS error code (XML <Code> or JSON __type), if any */
	char message[512];      /* AWS error message, if any */
	char region[64];        /* S3: the bucket's region (x-amz-bucket-region, else a
				 * redirect's <Endpoint> or <Region>), "" when not given */
};

/* Called about once a second during a transfer; non-zero aborts it. */
typedef int (*th_aws_progress_fn)(void *ctx);

struct th_aws_req {
	const char *method;       /* "GET" or "POST" */
	const char *url;
	const char *service;      /* "s3", "sqs", "sts"; NULL = unsigned */
	const char *region;
	const struct th_aws_creds *creds; /* NULL = unsigned */
	const char *content_type; /* POST only */
	const char *amz_target;   /* X-Amz-Target (JSON protocol), or NULL */
	const char *extra_header; /* one more "Name: value" header, or NULL */
	const char *body;
	size_t body_len;
	int out_fd;               /* >= 0: write the body here, else to memory */
	uint64_t max_bytes;       /* abort past this many body bytes; 0 = 64 MiB */
	long timeout_s;           /* whole request; 0 = 300 */
	th_aws_progress_fn progress;
	void *progress_ctx;
};

/** @brief Global libcurl setup; call once before any request. */
int th_aws_global_init(void);

/**
 * @brief Perform one request. A response with any HTTP status is a success of
 *        this call: look at resp->status (and resp->code / message for AWS's
 *        error). @returns 0, TH_EIO (no response: connection, timeout, or
 *        aborted by progress), TH_ETOOBIG (body over max_bytes), TH_ENOMEM,
 *        with errstr set (never containing a secret).
 */
int th_aws_request(const struct th_aws_req *rq, struct th_aws_resp *resp, char *errstr,
		   size_t errstr_size);
void th_aws_resp_free(struct th_aws_resp *resp);

/** @brief "https://sqs.REGION.amazonaws.com" or the custom endpoint (no slash at end). */
void th_aws_endpoint(const struct th_aws_target *t, const char *service, char *out,
		     size_t out_size);
/**
 * @brief URL of an S3 object (or of the bucket when key is NULL): path-style on
 *        a custom endpoint, virtual-hosted on AWS; the key is percent-encoded
 *        once as SigV4 wants it ('/' kept). @returns 0 or TH_ETOOBIG.
 */
int th_aws_s3_url(const struct th_aws_target *t, const char *bucket, const char *key,
		  char *out, size_t out_size);
/**
 * @brief The region in an S3 endpoint host name, as a 301 PermanentRedirect's
 *        <Endpoint> gives it: "b.s3.eu-west-1.amazonaws.com", "b.s3-eu-west-1…",
 *        "b.s3.dualstack.eu-west-1…"; the global "b.s3.amazonaws.com" is us-east-1.
 * @returns 0, or TH_ENOTFOUND (out "") when the name is not an S3 endpoint.
 */
int th_aws_s3_endpoint_region(const char *host, char *out, size_t out_size);
/** @brief Percent-encode all but unreserved characters ('/' too): query values, forms. */
int th_aws_uri_encode(const char *in, char *out, size_t out_size);
/** @brief Decode an S3 event notification's key ('+' is a space, %XX). */
void th_aws_s3_key_decode(const char *in, char *out, size_t out_size);

/* ---- tiny XML reading (S3 and STS answers) ---- */

/**
 * @brief Text of the first <tag>…</tag> in [p, end), entities decoded, into out.
 * @returns a pointer just after the closing tag, or NULL when absent.
 */
const char *th_aws_xml_text(const char *p, const char *end, const char *tag, char *out,
			    size_t out_size);

/* ---- JSON answers (src/aws_json.cpp, simdjson) ---- */

/**
 * @brief Top-level string fields of a JSON object: for each names[i] copies the
 *        value into outs[i] (size out_sizes[i]), "" when absent or not a string.
 * @returns 0, or TH_EPARSE when the text is not a JSON object.
 */
int th_aws_json_strings(const char *json, size_t len, const char *const *names, char **outs,
			const size_t *out_sizes, int n);

/* One SQS message of a ReceiveMessage answer. Borrowed for the callback only. */
struct th_sqs_msg {
	const char *id, *receipt, *body;
	size_t body_len;
	long receive_count; /* ApproximateReceiveCount, 0 when not given */
};
/** @returns the number of messages, or TH_EPARSE. Stops early when fn returns non-zero. */
int th_aws_json_sqs_messages(const char *json, size_t len,
			     int (*fn)(void *ctx, const struct th_sqs_msg *m), void *ctx);

/* One S3 object announced by a notification. */
struct th_s3_obj {
	char bucket[256];
	char key[1100];  /* decoded */
	char etag[160];  /* "" when the notification has none (CloudTrail's own) */
	char version[1100];
};
enum th_notice_kind {
	TH_NOTICE_OBJECTS = 0, /* objects listed (possibly none) */
	TH_NOTICE_TEST = 1,    /* s3:TestEvent or a subscription confirmation: nothing to do */
};
/**
 * @brief Parse an SQS message body: an S3 event notification, the same inside
 *        an SNS envelope, CloudTrail's SNS message (s3Bucket + s3ObjectKey), or
 *        S3's EventBridge event (source aws.s3). Only ObjectCreated:* records
 *        and "Object Created" events count.
 * @param objs array of max_objs; *n_objs receives how many were filled.
 * @returns TH_NOTICE_OBJECTS, TH_NOTICE_TEST, TH_EPARSE (not a notification we
 *          know) or TH_ETOOBIG (more objects than max_objs).
 */
int th_aws_json_notice(const char *json, size_t len, struct th_s3_obj *objs, int max_objs,
		       int *n_objs);

/* ---- credentials ---- */

struct th_aws_credsrc;
/**
 * @brief The credential chain, in the SDKs' order: environment
 *        (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN), web identity
 *        (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, STS AssumeRoleWithWebIdentity),
 *        the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 *        ~/.aws/credentials, profile AWS_PROFILE or "default"), the container
 *        endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, token from
 *        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE / _TOKEN), EC2 IMDSv2 (off with
 *        AWS_EC2_METADATA_DISABLED=true). @p t gives STS's region and endpoint.
 */
int th_aws_creds_new(struct th_aws_credsrc **srcp, const struct th_aws_target *t);
void th_aws_creds_destroy(struct th_aws_credsrc *src);
/**
 * @brief Current credentials, fetched or refreshed when they expire within
 *        five minutes (or @p force: after the service said they expired).
 * @returns 0 with *out pointing into src (valid until the next call), or
 *          TH_ECONFIG (no source found, or a source refused) with errstr set.
 */
int th_aws_creds_get(struct th_aws_credsrc *src, bool force, const struct th_aws_creds **out,
		     char *errstr, size_t errstr_size);

/* ---- the calls ---- */

struct th_sqs {
	const struct th_aws_target *t;
	struct th_aws_credsrc *creds;
	const char *queue_url;
};
/**
 * @brief One SQS JSON-protocol call (ReceiveMessage, DeleteMessage,
 *        ChangeMessageVisibility): POST to the queue's endpoint, body @p json.
 * @returns 0 with resp filled on HTTP 200; TH_ECONFIG when AWS refused the
 *          credentials or the signature (errstr names AWS's code); TH_EIO for
 *          anything else (errstr set).
 */
int th_sqs_call(struct th_sqs *q, const char *action, const char *json,
		struct th_aws_resp *resp, char *errstr, size_t errstr_size);

/** @brief Whether an AWS error code says the (temporary) credentials expired:
 *         ExpiredToken, ExpiredTokenException, RequestExpired. */
bool th_aws_expired_error(const char *code);
/** @brief Whether an AWS error code means bad credentials or signature (not retriable). */
bool th_aws_auth_error(const char *code, long status);

/**
 * @brief Whether a request's failure is AWS's or the network's for now, not
 *        the object's: no answer (th_aws_request() returned TH_EIO: connection,
 *        timeout), a 5xx, throttling (429, SlowDown) or S3's RequestTimeout.
 * @param rc th_aws_request()'s return; status and code its response's when rc is 0.
 */
bool th_aws_transient(int rc, long status, const char *code);

#ifdef __cplusplus
}
#endif

#endif
