/*
 * Input framing: files and stdin (plain or gzip) holding a stream of JSON
 * values separated by whitespace, cut into top-level values for
 * th_parser_feed(), plus the structural fallback that salvages the good
 * records of a container simdjson rejected as a whole.
 *
 * Framing is structural (strings, escapes, bracket depth) and deliberately
 * forgiving about where a broken value ends, because one truncated line must
 * cost one record, not the rest of the file:
 *  - a raw newline inside a string ends the broken value at that newline
 *    (JSON forbids raw newlines in strings, so the line was cut);
 *  - inside an unfinished top-level object, a line that starts with '{' in
 *    column 0 starts a new value (pretty-printers indent nested values) --
 *    unless a '{' may legally stand there (after ':', or after ',' or '['
 *    inside an array, as json.dumps(indent=0) writes): then the value goes on
 *    on a guess, and ends at that line after all if it turns out broken;
 *  - a top-level '[' whose first element is not followed by ',' or ']' opens no
 *    array (a stray line before JSON lines): it alone is rejected.
 * Memory is bounded whatever the input: a value that is not a container may
 * take record_max plus an envelope's worth of bytes, text outside values
 * without a line end as much; past that, the rest is rejected once and skipped
 * as it arrives. Containers (a log file's "Records", a top-level array) stream:
 * their records are delivered as they are read, an over-long one is rejected
 * and skipped structurally, and doc_max is only a last bound. A UTF-8
 * byte-order mark before a value is skipped.
 * JSON lines take a fast path: a line that starts with '{' and ends with '}'
 * goes to the parser whole, found with memchr instead of a byte-by-byte scan.
 * gzip is decoded here rather than with gzread, which drops whatever follows
 * a gzip member when it is not another member.
 */
#include "trailhound/input.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* Small reads under the fuzzer: buffer refills and growth are then reached by
 * small inputs, and a run does not pay for a 4 MiB allocation. */
#define READ_CHUNK (4u << 10)
#else
#define READ_CHUNK (4u << 20)
#endif

/* Envelope bytes (EventBridge) a record may carry on top of record_max. */
#define ENVELOPE_MAX (64u << 10)
/* Bytes of an over-long run kept in its rejection (dead letter): enough to
 * recognise it, bounded whatever its length. */
#define GARBAGE_REPORT_MAX ((size_t)4096)
/* Nesting depth up to which frame_one knows each container's kind. */
#define KIND_MAX 64

static inline int is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *skip_string(const char *p, const char *end)
{
	/* p is just after the opening quote */
	while (p < end) {
		const char *q = p;
		while (q < end && *q != '"' && *q != '\\' && *q != '\n')
			q++;
		if (q >= end)
			return NULL;
		if (*q == '"')
			return q + 1;
		if (*q == '\n')
			return NULL;
		p = q + 2; /* backslash: skip the escaped byte */
	}
	return NULL;
}

const char *th_json_skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return NULL;
	if (*p != '{' && *p != '[' && *p != '"') {
		/* a scalar: up to the next delimiter */
		while (p < end && !is_ws(*p) && *p != ',' && *p != ']' && *p != '}')
			p++;
		return p;
	}
	while (p < end) {
		char c = *p;
		if (c == '"') {
			p = skip_string(p + 1, end);
			if (!p)
				return NULL;
			if (depth == 0)
				return p;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']') {
			if (--depth == 0)
				return p + 1;
			if (depth < 0)
				return NULL;
		}
		p++;
	}
	return NULL;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && is_ws(*p))
		p++;
	return p;
}

static int deliver_one(struct th_parser *pr, const char *buf, size_t len, uint64_t offset,
		       const struct th_sink *sink)
{
	struct th_event ev;
	enum th_reject why = TH_REJECT_NONE;
	char detail[256] = "";
	int rc = th_parser_parse(pr, buf, len, &ev, &why, detail, sizeof(detail));
	if (rc == 0)
		return sink->on_event(sink->ctx, &ev, buf, len, offset);
	sink->on_reject(sink->ctx, why ? why : TH_REJECT_MALFORMED_JSON,
			rc == TH_ENOMEM ? "out of memory" : detail, buf, len, offset);
	return 0;
}

/* For a record at p that starts in column 0: the first later '{' in column 0
 * that cannot continue it -- where JSON allows no object (after a complete
 * value, or after ',' in an object), or anywhere after a raw newline in a
 * string cut it. NULL when there is none before the record ends or end. */
static const char *column0_break(const char *p, const char *end)
{
	char kind[KIND_MAX], last = 0;
	int depth = 0;
	bool cut = false;
	for (const char *q = p; q < end; q++) {
		char c = *q;
		if (c == '"') {
			q++;
			while (q < end && *q != '"' && *q != '\n') {
				if (*q == '\\')
					q++;
				q++;
			}
			if (q >= end)
				return NULL;
			if (*q == '\n')
				cut = true; /* a raw newline: the value was cut here */
			else
				last = '"';
			continue;
		}
		if (c == '{' && depth > 0 && q[-1] == '\n') {
			bool legal = !cut && (last == ':' || ((last == ',' || last == '[') &&
							      depth < KIND_MAX && kind[depth] == '['));
			if (!legal)
				return q;
		}
		if (c == '{' || c == '[') {
			depth++;
			if (depth < KIND_MAX)
				kind[depth] = c;
		} else if ((c == '}' || c == ']') && --depth <= 0) {
			return NULL;
		}
		if (!is_ws(c))
			last = c;
	}
	return NULL;
}

/* In a pretty-printed container every record starts on its own line with the
 * same indentation, nested values are indented further, and a raw newline
 * cannot occur inside a string. So when a record was cut short, the next line
 * with its indentation followed by '{' is where its successor starts.
 * Returns that '{' within (p, end), or NULL (also when p is not alone at the
 * start of its line, as in a one-line container). */
static const char *next_sibling(const char *base, const char *p, const char *end)
{
	const char *ls = p;
	while (ls > base && (ls[-1] == ' ' || ls[-1] == '\t'))
		ls--;
	if (ls == base || ls[-1] != '\n')
		return NULL;
	size_t ind = (size_t)(p - ls);
	/* Records in column 0 (one per line, or json.dumps(indent=0), where the
	 * objects of nested arrays are in column 0 too): only a '{' that cannot
	 * continue the record is its successor. */
	if (ind == 0)
		return column0_break(p, end);
	for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL;) {
		q++;
		if ((size_t)(end - q) > ind && memcmp(q, ls, ind) == 0 && q[ind] == '{')
			return q + ind;
	}
	return NULL;
}

/* Elements of the array at p (p at '['); each is parsed on its own. */
static int split_array(struct th_parser *pr, const char *base, const char *p, const char *end,
		       uint64_t offset, const struct th_sink *sink)
{
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
		return 1;
	while (p < end) {
		const char *e = th_json_skip_value(p, end);
		const char *next = *p == '{' ? next_sibling(base, p, e ? e : end) : NULL;
		int rc;
		if (next) {
			/* The record was cut and its successor follows: report the
			 * fragment and carry on from there. */
			const char *t = next;
			while (t > p && is_ws(t[-1]))
				t--;
			sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
					"record cut short (the next record starts on a later line)", p,
					(size_t)(t - p), offset + (uint64_t)(p - base));
			p = next;
			continue;
		}
		if (!e) {
			/* Structure is lost from here on: report the remainder once. */
			sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
					"record structure broken; rest of the container skipped", p,
					(size_t)(end - p), offset + (uint64_t)(p - base));
			return 1;
		}
		if (*p == '{')
			rc = deliver_one(pr, p, (size_t)(e - p), offset + (uint64_t)(p - base), sink);
		else {
			sink->on_reject(sink->ctx, TH_REJECT_NOT_CLOUDTRAIL,
					"array element is not an object", p, (size_t)(e - p),
					offset + (uint64_t)(p - base));
			rc = 0;
		}
		if (rc)
			return -rc;
		p = skip_ws(e, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			return 1;
		sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
				"expected ',' or ']' between records; rest of the container skipped",
				p, (size_t)(end - p), offset + (uint64_t)(p - base));
		return 1;
	}
	return 1;
}

int th_split_container(struct th_parser *pr, const char *buf, size_t len, uint64_t offset,
		       const struct th_sink *sink)
{
	const char *end = buf + len;
	const char *p = skip_ws(buf, end);

	if (p >= end)
		return 0;
	if (*p == '[')
		return split_array(pr, buf, p, end, offset, sink);
	if (*p != '{')
		return 0;
	/* Walk the members of the top-level object looking for "Records". */
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"') {
		const char *ks = p + 1;
		const char *ke = skip_string(ks, end);
		if (!ke)
			return 0;
		p = skip_ws(ke, end);
		if (p >= end || *p != ':')
			return 0;
		p = skip_ws(p + 1, end);
		if ((size_t)(ke - 1 - ks) == 7 && memcmp(ks, "Records", 7) == 0 && p < end && *p == '[')
			return split_array(pr, buf, p, end, offset, sink);
		p = th_json_skip_value(p, end);
		if (!p)
			return 0;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p = skip_ws(p + 1, end);
		else
			break;
	}
	return 0;
}

/* ---- streaming over files ---- */

/* Raw bytes are read in this size and inflated (or copied) into buf. */
#define RAW_CHUNK (256u << 10)

enum src_mode {
	SRC_START, /* at the start of the input or after a gzip member: sniff */
	SRC_PLAIN, /* copying bytes as they are */
	SRC_GZIP,  /* inflating a gzip member */
};

/* The buffers of closed inputs, kept for the next open: a backtest opens
 * thousands of small files (twice each: the archive reads a file's first
 * record to order it), and a fresh RAW_CHUNK + READ_CHUNK per open was page
 * faults and, under AddressSanitizer, a poisoned mapping per file (most of a
 * sanitizer run's time). Only buffers still at their first size come back;
 * one grown for a long record is freed. Shared by all threads, at most
 * SPARES_MAX pairs (the reading thread, and the bridge's workers). */
#define SPARES_MAX 2
static struct {
	pthread_mutex_t mu;
	int n;
	unsigned char *raw[SPARES_MAX];
	char *buf[SPARES_MAX];
} spares = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void spares_take(unsigned char **raw, char **buf)
{
	*raw = NULL;
	*buf = NULL;
	pthread_mutex_lock(&spares.mu);
	if (spares.n > 0) {
		spares.n--;
		*raw = spares.raw[spares.n];
		*buf = spares.buf[spares.n];
	}
	pthread_mutex_unlock(&spares.mu);
}

/* Keeps or frees the pair; either may be NULL (then both are freed). */
static void spares_give(unsigned char *raw, char *buf)
{
	if (raw && buf) {
		pthread_mutex_lock(&spares.mu);
		if (spares.n < SPARES_MAX) {
			spares.raw[spares.n] = raw;
			spares.buf[spares.n] = buf;
			spares.n++;
			raw = NULL;
			buf = NULL;
		}
		pthread_mutex_unlock(&spares.mu);
	}
	free(raw);
	free(buf);
}

struct th_input {
	int fd;
	enum src_mode mode;
	bool z_ready; /* zs initialised */
	bool raw_eof;
	z_stream zs;
	unsigned char *raw; /* RAW_CHUNK bytes read from fd, [raw_pos, raw_pos + raw_len) unused */
	size_t raw_pos, raw_len;
	uint64_t raw_read; /* bytes read from fd, for progress */
	char *path;
	char *buf;  /* holds [0, len) plus TH_PARSE_PADDING */
	size_t cap, len;
	size_t doc_max;
	uint64_t base; /* input offset of buf[0] */
	int eof;
	/* Streaming a log file's "Records" array (see frame_one): skipping an
	 * over-long record structurally, then resuming the array after it. */
	bool sk_active, sk_str, sk_esc;
	const char *resume; /* RECORDS_OPEN or "[": how the container goes on; NULL */
	long sk_depth;
};

int th_input_open(struct th_input **inp, const char *path, size_t doc_max, char *errstr,
		  size_t errstr_size)
{
	struct th_input *in = calloc(1, sizeof(*in));
	int fd = -1;
	struct stat st;

	if (!in)
		return TH_ENOMEM;
	in->fd = -1;
	in->doc_max = doc_max ? doc_max : (size_t)256 << 20;
	in->path = strdup(path);
	if (!in->path)
		goto nomem;
	if (strcmp(path, "-") == 0)
		fd = dup(STDIN_FILENO);
	else
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		th_input_close(in);
		return errno == ENOENT ? TH_ENOTFOUND : TH_EIO;
	}
	if (fstat(fd, &st) != 0)
		st.st_mode = 0;
	if (S_ISDIR(st.st_mode)) {
		/* open() takes a directory; the first read would then fail with
		 * a bare "input/output error". */
		snprintf(errstr, errstr_size, "%s: is a directory", path);
		close(fd);
		th_input_close(in);
		return TH_EINVAL;
	}
	in->fd = fd;
	in->cap = READ_CHUNK;
	spares_take(&in->raw, &in->buf);
	if (!in->raw && !(in->raw = malloc(RAW_CHUNK)))
		goto nomem;
	if (!in->buf && !(in->buf = malloc(in->cap + TH_PARSE_PADDING)))
		goto nomem;
	*inp = in;
	return 0;
nomem:
	snprintf(errstr, errstr_size, "%s: out of memory", path);
	th_input_close(in);
	return TH_ENOMEM;
}

void th_input_close(struct th_input *in)
{
	if (!in)
		return;
	if (in->fd >= 0)
		close(in->fd);
	if (in->z_ready)
		inflateEnd(&in->zs);
	if (in->cap == READ_CHUNK) {
		spares_give(in->raw, in->buf);
	} else {
		free(in->raw);
		free(in->buf);
	}
	free(in->path);
	free(in);
}

uint64_t th_input_bytes_read(const struct th_input *in)
{
	return in->raw_read;
}

/* Append raw bytes from the file. 0 ok, 1 at end of file, or TH_EIO. */
static int raw_more(struct th_input *in)
{
	ssize_t n;
	if (in->raw_eof)
		return 1;
	if (in->raw_pos) {
		memmove(in->raw, in->raw + in->raw_pos, in->raw_len);
		in->raw_pos = 0;
	}
	do
		n = read(in->fd, in->raw + in->raw_len, RAW_CHUNK - in->raw_len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return TH_EIO;
	if (n == 0) {
		in->raw_eof = true;
		return 1;
	}
	in->raw_len += (size_t)n;
	in->raw_read += (uint64_t)n;
	return 0;
}

/* Decoded bytes into dst: plain text as is, gzip members inflated. Unlike
 * gzread, which silently drops whatever follows a gzip member when it is not
 * another member, plain text after a member is passed on like any other input
 * (concatenated files must not lose their tail). Returns the byte count, 0 at
 * end of input, or TH_EIO (read error, corrupt or truncated gzip). */
static int src_read(struct th_input *in, char *dst, size_t room)
{
	int r;
	for (;;) {
		if (in->mode == SRC_START) {
			while (in->raw_len < 2 && (r = raw_more(in)) == 0)
				;
			if (in->raw_len < 2 && r < 0)
				return r;
			if (in->raw_len == 0)
				return 0;
			const unsigned char *b = in->raw + in->raw_pos;
			if (in->raw_len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
				/* 16 + MAX_WBITS: a gzip wrapper, one member at a time */
				if (!in->z_ready) {
					if (inflateInit2(&in->zs, 16 + MAX_WBITS) != Z_OK)
						return TH_ENOMEM;
					in->z_ready = true;
				} else if (inflateReset(&in->zs) != Z_OK) {
					return TH_EIO;
				}
				in->mode = SRC_GZIP;
			} else {
				in->mode = SRC_PLAIN;
			}
		}
		if (in->mode == SRC_PLAIN && in->raw_len == 0) {
			/* plain text: straight into the caller's buffer, no copy */
			ssize_t n;
			if (in->raw_eof)
				return 0;
			do
				n = read(in->fd, dst, room);
			while (n < 0 && errno == EINTR);
			if (n < 0)
				return TH_EIO;
			if (n == 0)
				in->raw_eof = true;
			in->raw_read += (uint64_t)n;
			return (int)n;
		}
		if (in->raw_len == 0) {
			r = raw_more(in);
			if (r < 0)
				return r;
			if (r == 1)
				/* end of file inside a gzip member: truncated */
				return in->mode == SRC_GZIP ? TH_EIO : 0;
		}
		if (in->mode == SRC_PLAIN) {
			size_t n = in->raw_len < room ? in->raw_len : room;
			memcpy(dst, in->raw + in->raw_pos, n);
			in->raw_pos += n;
			in->raw_len -= n;
			return (int)n;
		}
		in->zs.next_in = in->raw + in->raw_pos;
		in->zs.avail_in = (uInt)in->raw_len;
		in->zs.next_out = (unsigned char *)dst;
		in->zs.avail_out = (uInt)room;
		int zr = inflate(&in->zs, Z_NO_FLUSH);
		size_t used = in->raw_len - in->zs.avail_in;
		size_t made = room - in->zs.avail_out;
		in->raw_pos += used;
		in->raw_len -= used;
		if (zr == Z_STREAM_END)
			in->mode = SRC_START; /* another member, plain text, or the end */
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return TH_EIO;
		if (made)
			return (int)made;
	}
}

/* Read more bytes; grows the buffer when it is full. 0 ok, TH_EIO, or 1 at EOF. */
static int fill(struct th_input *in, size_t want)
{
	if (in->eof)
		return 1;
	if (in->cap - in->len < want) {
		size_t ncap = in->cap;
		while (ncap - in->len < want)
			ncap *= 2;
		char *nb = realloc(in->buf, ncap + TH_PARSE_PADDING);
		if (!nb)
			return TH_ENOMEM;
		in->buf = nb;
		in->cap = ncap;
	}
	size_t room = in->cap - in->len;
	if (room > (1u << 30))
		room = 1u << 30;
	int n = src_read(in, in->buf + in->len, room);
	if (n < 0)
		return n;
	if (n == 0) {
		in->eof = 1;
		return 1;
	}
	in->len += (size_t)n;
	return 0;
}

/* A sink that intercepts the rejection of a whole JSON line, so the line can
 * be re-framed structurally (two values on one line, or a cut value followed
 * by a good one) before anything is reported. */
struct line_guard {
	const struct th_sink *sink;
	const char *line;
	size_t line_len;
	int whole_line_rejected;
	bool utf8_too; /* also intercept invalid_utf8 (a guess that spans several records) */
	enum th_reject why;
	char detail[256];
};

static int guard_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		       uint64_t offset)
{
	struct line_guard *g = ctx;
	return g->sink->on_event(g->sink->ctx, ev, raw, raw_len, offset);
}

static void guard_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			 size_t raw_len, uint64_t offset)
{
	struct line_guard *g = ctx;
	if (raw == g->line && raw_len == g->line_len &&
	    (why == TH_REJECT_MALFORMED_JSON || (g->utf8_too && why == TH_REJECT_INVALID_UTF8))) {
		g->whole_line_rejected = 1;
		g->why = why;
		snprintf(g->detail, sizeof(g->detail), "%s", detail);
		return;
	}
	g->sink->on_reject(g->sink->ctx, why, detail, raw, raw_len, offset);
}

/* Where a broken multi-line top-level value ends: at the closing bracket in
 * column 0 (pretty-printers put only the outermost brackets there) or before
 * the next value starting in column 0 -- for an array only '[', since arrays
 * of events are also written with one element per line in column 0.
 * Searches the lines after `from`; NULL when neither is buffered. */
static const char *pretty_value_end(const char *from, const char *end, int top_is_obj)
{
	for (const char *q = from; q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL;) {
		q++;
		if (q >= end)
			break;
		if (*q == (top_is_obj ? '}' : ']'))
			return q + 1;
		if (*q == '[' || (top_is_obj && *q == '{'))
			return q;
	}
	return NULL;
}

/* A top-level value that cannot be complete ends at e: the complete records
 * of a container are still delivered, anything else is reported whole.
 * Returns 1, or -1 with *stop set when a callback stopped the stream. */
static int give_up_value(struct th_parser *pr, const struct th_sink *sink, const char *s,
			 const char *e, uint64_t off, const char *why, int *stop)
{
	int r = th_split_container(pr, s, (size_t)(e - s), off, sink);
	if (r < 0) {
		*stop = -r;
		return -1;
	}
	if (r == 0)
		sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON, why, s, (size_t)(e - s), off);
	return 1;
}

/* Whether the line ending at nl (a '\n') leaves an array element expected:
 * its last non-blank byte is ',' or '['. In the "Records" array of a log file
 * a '{' in column 0 on the next line then continues the file (one record per
 * line) rather than starting a new value. Nested arrays of a record get no
 * such pass: there a cut record followed by the next line must cost one
 * record only. */
static bool continues_value(const char *start, const char *nl)
{
	const char *q = nl;
	while (q > start && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r' || q[-1] == '\n'))
		q--;
	return q > start && (q[-1] == ',' || q[-1] == '[');
}

/* Whether the '[' at p is the value of a "Records" key. */
static bool is_records_key(const char *start, const char *p)
{
	static const char key[] = "\"Records\"";
	const char *q = p;
	while (q > start && is_ws(q[-1]))
		q--;
	if (q == start || q[-1] != ':')
		return false;
	q--;
	while (q > start && is_ws(q[-1]))
		q--;
	return (size_t)(q - start) >= sizeof(key) - 1 &&
	       memcmp(q - (sizeof(key) - 1), key, sizeof(key) - 1) == 0;
}

/* The value at s was continued past a '{' in column 0 on a guess (see
 * frame_one) and turned out broken: the part before the guess is the cut
 * record, and framing resumes at the guess. */
static int end_at_guess(struct th_parser *pr, const struct th_sink *sink, const char *buf,
			const char *s, const char *guess, uint64_t off, size_t *pos, int *stop)
{
	const char *e = guess;
	while (e > s && is_ws(e[-1]))
		e--;
	if (give_up_value(pr, sink, s, e, off,
			  "record cut short (the next record starts on a later line)", stop) < 0)
		return -1;
	*pos = (size_t)(guess - buf);
	return 1;
}

/* A top-level array whose element at [.., el_end) is followed by neither ','
 * nor ']'. Before any ',' the '[' opened no array at all (a stray line before
 * JSON lines): it alone is rejected and its "elements" are framed as the
 * values they are. After a ',' the complete elements are delivered and framing
 * resumes after the last one. */
static int end_broken_array(struct th_parser *pr, const struct th_sink *sink, const char *buf,
			    const char *s, const char *first_el, bool comma, const char *el_end,
			    uint64_t off, size_t *pos, int *stop)
{
	if (!comma && first_el) {
		const char *e = first_el;
		while (e > s && is_ws(e[-1]))
			e--;
		sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
				"'[' that opens no array (no ',' after its first element); the "
				"values after it are read on their own",
				s, (size_t)(e - s), off);
		*pos = (size_t)(first_el - buf);
		return 1;
	}
	if (give_up_value(pr, sink, s, el_end, off,
			  "array elements not separated by ','; the values after it are read on "
			  "their own",
			  stop) < 0)
		return -1;
	*pos = (size_t)(el_end - buf);
	return 1;
}

/* What a streamed log file's remainder is given to read as a value again. */
#define RECORDS_OPEN "{\"Records\":["

/* Skip the bytes of an over-long record from pos (structure only: strings,
 * escapes, depth). Returns the position after what was consumed; clears
 * sk_active at the record's end. */
static size_t skip_record(struct th_input *in, size_t pos)
{
	const char *b = in->buf;
	for (; pos < in->len; pos++) {
		char c = b[pos];
		if (in->sk_str) {
			if (in->sk_esc)
				in->sk_esc = false;
			else if (c == '\\')
				in->sk_esc = true;
			else if (c == '"' || c == '\n') /* a raw newline: the string was cut */
				in->sk_str = false;
			continue;
		}
		if (c == '"')
			in->sk_str = true;
		else if (c == '{' || c == '[')
			in->sk_depth++;
		else if ((c == '}' || c == ']') && --in->sk_depth <= 0) {
			in->sk_active = false;
			return pos + 1;
		}
	}
	return pos;
}

/* After a skipped record: the rest of its container reads as a value of its
 * own again, in->resume put in front of it (the ',' that followed the
 * skipped record becomes a blank). Offsets stay those of the input. */
static int resume_container(struct th_input *in, size_t *pos)
{
	const size_t n = strlen(in->resume);
	if (in->cap - in->len < n) {
		char *nb = realloc(in->buf, in->cap + n + TH_PARSE_PADDING);
		if (!nb)
			return TH_ENOMEM;
		in->buf = nb;
		in->cap += n;
	}
	memmove(in->buf + *pos + n, in->buf + *pos, in->len - *pos);
	memcpy(in->buf + *pos, in->resume, n);
	if (in->buf[*pos + n] == ',')
		in->buf[*pos + n] = ' ';
	in->len += n;
	in->base -= n;
	in->resume = NULL;
	return 0;
}

/* Frame one value starting at *pos. Returns 1 when a value (or a rejected
 * fragment) was consumed, 0 when more input is needed, or a negative error /
 * the callback's stop value (as negative). */
static int frame_one(struct th_input *in, struct th_parser *pr, const struct th_sink *sink,
		     size_t *pos, int *stop)
{
	const char *buf = in->buf;
	const char *end = buf + in->len;
	const char *s = buf + *pos;
	uint64_t off = in->base + *pos;
	/* A value that is not a container is one record (perhaps in an
	 * EventBridge envelope): past this size it cannot be accepted, so it is
	 * not buffered any further. */
	size_t obj_max = th_parser_record_max(pr) + ENVELOPE_MAX;

	if ((unsigned char)*s == 0xEF) {
		/* A UTF-8 byte-order mark at the start of the file or of a line
		 * (files joined with cat) says nothing about the value after it. */
		if (end - s < 3 && !in->eof)
			return 0;
		if (end - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			*pos += 3;
			return 1;
		}
	}
	if (*s != '{' && *s != '[') {
		/* Garbage between values: report up to the end of the line. */
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl && !in->eof) {
			if ((size_t)(end - s) <= obj_max)
				return 0;
			/* No line end in sight (a run of zeros, binary data): report
			 * its start once and skip the rest as it arrives, so memory
			 * stays bounded whatever its length. */
			sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
					"text outside any JSON object or array, with no line end "
					"within the record size limit; skipped to the next line that "
					"starts a value",
					s, GARBAGE_REPORT_MAX, off);
			return -2;
		}
		const char *e = nl ? nl : end;
		sink->on_reject(sink->ctx, TH_REJECT_MALFORMED_JSON,
				"text outside any JSON object or array", s,
				(size_t)(e - s) > obj_max ? obj_max : (size_t)(e - s), off);
		*pos = (size_t)(e - buf);
		return 1;
	}

	/* Fast path for JSON lines. */
	if (*s == '{' && (s == buf || s[-1] == '\n')) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (nl || in->eof) {
			const char *e = nl ? nl : end;
			const char *t = e;
			while (t > s && is_ws(t[-1]))
				t--;
			if (t > s && t[-1] == '}') {
				struct line_guard g = {.sink = sink, .line = s, .line_len = (size_t)(t - s)};
				struct th_sink gs = {guard_event, guard_reject, &g};
				/* The byte after the line must be readable padding for simdjson:
				 * it is (the buffer always has TH_PARSE_PADDING spare bytes). */
				int rc = th_parser_feed(pr, s, (size_t)(t - s), off, &gs);
				if (rc) {
					*stop = rc;
					return -1;
				}
				if (!g.whole_line_rejected) {
					*pos = (size_t)(e - buf);
					return 1;
				}
				/* Fall through: re-frame this line structurally. */
				const char *v = th_json_skip_value(s, t);
				if (!v || v == t) {
					sink->on_reject(sink->ctx, g.why, g.detail, s, (size_t)(t - s), off);
					*pos = (size_t)(e - buf);
					return 1;
				}
				rc = th_parser_feed(pr, s, (size_t)(v - s), off, sink);
				if (rc) {
					*stop = rc;
					return -1;
				}
				*pos = (size_t)(v - buf);
				return 1;
			}
		}
	}

	/* Structural scan with the resync rules of the file comment. */
	int depth = 0, top_is_obj = *s == '{';
	/* The top-level object's "Records" array is open (depth 2): the one place
	 * where a '{' in column 0 surely continues the value, see continues_value(). */
	bool in_records = false;
	/* The '[' of the records of a container (a log file's "Records", or a
	 * top-level array), and the start of the record open inside it. */
	const char *rec_open = top_is_obj ? NULL : s, *el_start = NULL;
	/* kind[d]: '{' or '[' for the container open at depth d (up to KIND_MAX);
	 * last: the last byte outside strings that is not whitespace. Together
	 * they say whether a '{' may legally stand where it is. */
	char kind[KIND_MAX], last = 0;
	/* The first '{' in column 0 taken as part of the value on a guess: it may
	 * legally stand there (json.dumps(indent=0) puts every object in an array
	 * in column 0), but it may also be the next record after a cut one. If the
	 * value then turns out broken, the guess was wrong and the value ends here. */
	const char *guess = NULL;
	/* A top-level array: where its first element starts, whether a ',' has
	 * separated two of them. */
	const char *first_el = NULL;
	bool comma = false;
	const char *p = s;
	while (p < end) {
		char c = *p;
		if (c == '"') {
			const char *q = p + 1;
			for (;;) {
				while (q < end && *q != '"' && *q != '\\' && *q != '\n')
					q++;
				if (q < end && *q == '\\') {
					q += 2;
					continue;
				}
				break;
			}
			if (q >= end)
				break; /* need more input */
			if (*q == '\n') {
				if (guess)
					return end_at_guess(pr, sink, buf, s, guess, off, pos, stop);
				/* A raw newline cannot be in a JSON string: the record
				 * was cut here. A pretty-printed value goes on over the
				 * next lines, up to pretty_value_end(). */
				const char *e = q;
				if (memchr(s, '\n', (size_t)(q - s))) {
					e = pretty_value_end(q, end, top_is_obj);
					if (!e && !in->eof)
						break; /* need more input */
					if (!e)
						e = end;
				}
				if (give_up_value(pr, sink, s, e, off,
						  "unterminated string (record cut at end of line)",
						  stop) < 0)
					return -1;
				*pos = (size_t)(e - buf);
				return 1;
			}
			p = q + 1;
			last = '"';
			continue;
		}
		if (c == '{' || c == '[') {
			if (top_is_obj && depth > 0 && p[-1] == '\n' && c == '{' &&
			    !(in_records && depth == 2 && continues_value(s, p - 1))) {
				/* After ':' a value is due; after ',' or '[' only inside
				 * an array. Anywhere else a '{' is the next record. */
				bool legal = last == ':' || ((last == ',' || last == '[') &&
							     depth < KIND_MAX && kind[depth] == '[');
				if (!legal && guess)
					return end_at_guess(pr, sink, buf, s, guess, off, pos, stop);
				if (!legal) {
					if (give_up_value(pr, sink, s, p - 1, off,
							  "unterminated object (a new record starts on "
							  "the next line)",
							  stop) < 0)
						return -1;
					*pos = (size_t)(p - buf);
					return 1;
				}
				if (!guess)
					guess = p;
			}
			if (c == '[' && depth == 1 && top_is_obj && is_records_key(s, p)) {
				in_records = true;
				rec_open = p;
			}
			if (depth == (in_records ? 2 : top_is_obj ? -1 : 1))
				el_start = p;
			if (!top_is_obj && depth == 1 && !first_el)
				first_el = p;
			depth++;
			if (depth < KIND_MAX)
				kind[depth] = c;
		} else if (c == '}' || c == ']') {
			if (--depth == 0) {
				size_t n = (size_t)(p + 1 - s);
				if (guess && n > obj_max && !in_records)
					return end_at_guess(pr, sink, buf, s, guess, off, pos, stop);
				/* On a guess, a whole-value syntax error means the guess was
				 * wrong: intercept it and end the value at the guess. */
				struct line_guard g = {.sink = sink, .line = s, .line_len = n,
						       .utf8_too = true};
				struct th_sink gs = {guard_event, guard_reject, &g};
				int rc = th_parser_feed(pr, s, n, off, guess ? &gs : sink);
				if (rc) {
					*stop = rc;
					return -1;
				}
				if (g.whole_line_rejected)
					return end_at_guess(pr, sink, buf, s, guess, off, pos, stop);
				*pos = (size_t)(p + 1 - buf);
				return 1;
			}
			if (in_records && depth == 2)
				/* A log file's record closed: a guess inside it is settled
				 * (a broken record is split out by th_split_container). */
				guess = NULL;
			if (!top_is_obj && depth == 1) {
				/* An array's elements are separated by ','. A '[' line
				 * before JSON lines opens no array: without this, every
				 * later record would be taken as part of it. */
				const char *q = skip_ws(p + 1, end);
				if (q < end && *q != ',' && *q != ']')
					return end_broken_array(pr, sink, buf, s, first_el, comma, p + 1,
								off, pos, stop);
			}
		} else if (c == ',' && depth == (in_records ? 2 : top_is_obj ? -1 : 1)) {
			comma = true;
			if (!guess && (size_t)(p - s) > obj_max) {
				/* A container streams: the records before this ',' are
				 * delivered now, and the value goes on as if it started
				 * here, so memory holds about one record, not the file.
				 * The bytes before the ',' (delivered records) are
				 * overwritten with the container's opening. */
				const char *open = in_records ? RECORDS_OPEN : "[";
				size_t n = strlen(open);
				int r = split_array(pr, s, rec_open, p + 1, off, sink);
				if (r < 0) {
					*stop = -r;
					return -1;
				}
				memcpy(in->buf + (p - buf) - (n - 1), open, n);
				*pos = (size_t)(p - buf) - (n - 1);
				return 1;
			}
		}
		if (!is_ws(c))
			last = c;
		p++;
	}
	if ((in_records ? depth >= 3 : !top_is_obj && depth >= 2) && el_start &&
	    (size_t)(end - el_start) > obj_max) {
		/* One record of a container over the limit: the records before it
		 * are delivered, it is rejected and skipped structurally as it
		 * arrives, and the container goes on after it. */
		int r = split_array(pr, s, rec_open, el_start, off, sink);
		if (r < 0) {
			*stop = -r;
			return -1;
		}
		sink->on_reject(sink->ctx, TH_REJECT_TOO_LARGE,
				"record over the record size limit; skipped", el_start,
				GARBAGE_REPORT_MAX, off + (uint64_t)(el_start - s));
		in->sk_active = true;
		in->sk_str = in->sk_esc = false;
		in->sk_depth = 0;
		in->resume = in_records ? RECORDS_OPEN : "[";
		*pos = (size_t)(el_start - buf);
		return 1;
	}
	if (guess && ((size_t)(end - s) > obj_max || in->eof))
		return end_at_guess(pr, sink, buf, s, guess, off, pos, stop);
	if (top_is_obj && !in_records && (size_t)(end - s) > obj_max) {
		/* One record over the limit: rejected without buffering it whole. */
		sink->on_reject(sink->ctx, TH_REJECT_TOO_LARGE,
				"record over the record size limit; skipped to the next line that "
				"starts a value",
				s, GARBAGE_REPORT_MAX, off);
		return -2; /* caller skips */
	}
	if ((size_t)(end - s) > in->doc_max) {
		sink->on_reject(sink->ctx, TH_REJECT_TOO_LARGE,
				"top-level value over the document size limit; skipped to the next line "
				"that starts a value",
				s, (size_t)(end - s) > 4096 ? 4096 : (size_t)(end - s), off);
		return -2; /* caller skips */
	}
	if (!in->eof)
		return 0;
	/* Either the input ends inside this value, or its brackets do not
	 * balance; a pretty-printed value still ends where pretty_value_end()
	 * says, and a container's complete records are still good (a partial
	 * download of an S3 log file, an array with a record cut short). */
	const char *e = pretty_value_end(s, end, top_is_obj);
	if (give_up_value(pr, sink, s, e ? e : end, off,
			  e ? "unbalanced brackets (record cut short)" : "input ends inside a JSON value",
			  stop) < 0)
		return -1;
	*pos = (size_t)((e ? e : end) - buf);
	return 1;
}

int th_input_run(struct th_input *in, struct th_parser *pr, const struct th_sink *sink)
{
	size_t pos = 0;
	/* 1: skipping to the end of the line; 2: at the start of a line, which
	 * ends the skip if it starts a value (decided once its byte is read,
	 * also when the line end was the last byte of a read) */
	int skipping = 0;

	for (;;) {
		/* Skip whitespace, and in skip mode everything up to a line starting a value. */
		while (pos < in->len) {
			if (in->sk_active) {
				pos = skip_record(in, pos);
				continue;
			}
			if (skipping == 2) {
				if (in->buf[pos] == '{' || in->buf[pos] == '[') {
					skipping = 0;
					continue;
				}
				skipping = 1;
			}
			if (skipping) {
				char *nl = memchr(in->buf + pos, '\n', in->len - pos);
				if (!nl) {
					pos = in->len;
					break;
				}
				pos = (size_t)(nl - in->buf) + 1;
				skipping = 2;
				continue;
			}
			if (!is_ws(in->buf[pos]))
				break;
			pos++;
		}
		if (pos < in->len) {
			int stop = 0;
			if (in->resume && !in->sk_active) {
				int rc = resume_container(in, &pos);
				if (rc)
					return rc;
			}
			int r = frame_one(in, pr, sink, &pos, &stop);
			if (r == 1)
				continue;
			if (r == -1)
				return stop;
			if (r == -2) {
				/* Oversized value or endless garbage at pos: skip it as it
				 * arrives, up to a line that starts a value. */
				skipping = 1;
				continue;
			}
			/* r == 0: need more input */
		} else if (in->eof) {
			return 0;
		}
		/* Move the unconsumed tail to the front and read more. */
		if (pos > 0) {
			memmove(in->buf, in->buf + pos, in->len - pos);
			in->base += pos;
			in->len -= pos;
			pos = 0;
		}
		int fr = fill(in, in->len >= in->cap / 2 ? in->cap : READ_CHUNK / 2);
		if (fr < 0)
			return fr;
		if (fr == 1 && in->len == 0)
			return 0;
	}
}
