/*
 * Archives: walks directories of CloudTrail log files and hands the files out
 * in delivery order (see include/trailhound/archive.h).
 *
 * A directory that holds YYYY directories is the root of one time-ordered
 * stream (an S3 region prefix): it is walked lazily, depth first in name
 * order, holding one sorted directory listing per level. Any other directory
 * is listed at once: its loose files form one stream sorted by key, its
 * subdirectories are visited in turn. The explicit file arguments form one
 * more stream. A binary heap merges the heads of all streams by
 * (timestamp, S3 name, discovery order), so the answer is the same whether an
 * archive is named as a directory or as its files.
 */
#include "trailhound/archive.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trailhound/common.h"
#include "trailhound/event.h"
#include "trailhound/time.h"
#include "trailhound/hash.h"
#include "trailhound/input.h"

struct node {
	char *path, *ledger;
	const char *tie; /* the basename of an S3-named file, else "" */
	int64_t ts;
	uint64_t size, seq;
	bool explicit_arg, stream;
};

struct frame {
	char *dir;
	char **names;
	size_t n, i;
};

struct stream {
	/* a sorted list (explicit files, loose files of a directory) ... */
	struct node *items;
	size_t n, i;
	/* ... or a lazy walk of a time-ordered subtree */
	struct frame *stk;
	int depth, cap;
	const char *walk_root; /* borrowed from th_archive.roots */
	struct node head;
	bool has_head;
};

struct seen {
	dev_t dev;
	ino_t ino;
	UT_hash_handle hh;
};

struct th_archive {
	struct stream **s;
	size_t ns, cap;
	size_t *heap, nheap;
	struct seen *dirs, *files;
	struct th_parser *parser;
	th_archive_skip_fn on_skip;
	void *ctx;
	char **roots;
	int nroots;
	uint64_t seq;
	struct node cur;
	struct th_archive_file out;
	bool started;
};

static const char *const skip_names[TH_SKIP__COUNT] = {
	"not_cloudtrail", "digest", "hidden", "symlink_loop",
	"duplicate",	  "not_regular", "unreadable", "done",
};

const char *th_archive_skip_name(enum th_archive_skip why)
{
	return why < TH_SKIP__COUNT ? skip_names[why] : "?";
}

static bool digits(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

bool th_archive_s3_name(const char *name, int64_t *ts_ms)
{
	/* <12 digits>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<id>.json[.gz] */
	static const char mid[] = "_CloudTrail_";
	size_t len = strlen(name);
	if (len < 12 + sizeof(mid) - 1 || !digits(name, 12) ||
	    memcmp(name + 12, mid, sizeof(mid) - 1) != 0)
		return false;
	const char *region = name + 12 + sizeof(mid) - 1;
	const char *ts = strchr(region, '_');
	if (!ts || ts == region)
		return false;
	ts++;
	/* YYYYMMDDTHHMMZ_ */
	if (strlen(ts) < 15 || !digits(ts, 8) || ts[8] != 'T' || !digits(ts + 9, 4) ||
	    ts[13] != 'Z' || ts[14] != '_')
		return false;
	const char *id = ts + 15;
	const char *ext = strstr(id, ".json");
	if (!ext || ext == id || (strcmp(ext, ".json") != 0 && strcmp(ext, ".json.gz") != 0))
		return false;
	char iso[32];
	snprintf(iso, sizeof(iso), "%.4s-%.2s-%.2sT%.2s:%.2s:00Z", ts, ts + 4, ts + 6, ts + 9,
		 ts + 11);
	return th_time_parse_iso(iso, strlen(iso), ts_ms) == 0;
}

int64_t th_archive_delivered(const char *path)
{
	const char *base = strrchr(path, '/');
	int64_t ts;
	return th_archive_s3_name(base ? base + 1 : path, &ts) ? ts : INT64_MIN;
}

/* ---- the first eventTime of a file without a timestamp in its name ---- */

struct peek {
	int64_t ts;
	bool found;
};

static int peek_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		      uint64_t offset)
{
	struct peek *pk = ctx;
	(void)raw;
	(void)raw_len;
	(void)offset;
	pk->ts = ev->event_time_ms;
	pk->found = true;
	return 1; /* one is enough */
}

static void peek_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
			size_t raw_len, uint64_t offset)
{
	(void)ctx, (void)why, (void)detail, (void)raw, (void)raw_len, (void)offset;
}

/* @returns 0 with *ts, TH_ENOTFOUND when no record parses, TH_EIO/TH_ENOMEM. */
static int first_event_time(struct th_archive *a, const char *path, int64_t *ts)
{
	struct peek pk = {0};
	struct th_sink sink = {peek_event, peek_reject, &pk};
	struct th_input *in;
	char errstr[256];
	if (!a->parser) {
		if (th_parser_new(&a->parser, 1 << 20))
			return TH_ENOMEM;
		th_parser_set_max_future_skew(a->parser, 0);
	}
	if (th_input_open(&in, path, 0, errstr, sizeof(errstr)))
		return TH_EIO;
	th_input_run(in, a->parser, &sink);
	th_input_close(in);
	if (!pk.found)
		return TH_ENOTFOUND;
	*ts = pk.ts;
	return 0;
}

/* ---- sets of (dev, ino) ---- */

static int seen_add(struct seen **set, const struct stat *st, bool *was)
{
	struct seen key = {0}, *e;
	key.dev = st->st_dev;
	key.ino = st->st_ino;
	HASH_FIND(hh, *set, &key.dev, sizeof(dev_t) + sizeof(ino_t), e);
	*was = e != NULL;
	if (e)
		return 0;
	if (!(e = calloc(1, sizeof(*e))))
		return TH_ENOMEM;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	HASH_ADD(hh, *set, dev, sizeof(dev_t) + sizeof(ino_t), e);
	return 0;
}

static void seen_free(struct seen **set)
{
	struct seen *e, *t;
	HASH_ITER(hh, *set, e, t)
	{
		HASH_DEL(*set, e);
		free(e);
	}
}

/* ---- nodes ---- */

static char *join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool slash = dl && dir[dl - 1] == '/';
	char *p = malloc(dl + nl + 2);
	if (p)
		snprintf(p, dl + nl + 2, "%s%s%s", dir, slash ? "" : "/", name);
	return p;
}

static const char *base_of(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

static void node_free(struct node *nd)
{
	free(nd->path);
	free(nd->ledger);
	memset(nd, 0, sizeof(*nd));
}

static bool in_digest_dir(const char *path)
{
	const char *p = strstr(path, "CloudTrail-Digest");
	return p && (p == path || p[-1] == '/' || p[-1] == '_');
}

/*
 * Decide what a file found while walking is. On success *nd owns @p path.
 * @returns 0 (a file to process), 1 (skipped, reported), TH_ENOMEM.
 */
static int classify(struct th_archive *a, char *path, const char *walk_root, struct node *nd)
{
	const char *base = base_of(path);
	struct stat st;
	char detail[64] = "";
	enum th_archive_skip why;
	bool was;
	int rc;

	memset(nd, 0, sizeof(*nd));
	if (base[0] == '.') {
		why = TH_SKIP_HIDDEN;
		goto skip;
	}
	if (in_digest_dir(path)) {
		why = TH_SKIP_DIGEST;
		goto skip;
	}
	if (stat(path, &st) != 0) {
		why = errno == ELOOP ? TH_SKIP_SYMLINK_LOOP : TH_SKIP_UNREADABLE;
		snprintf(detail, sizeof(detail), "%s", strerror(errno));
		goto skip;
	}
	if (!S_ISREG(st.st_mode)) {
		why = TH_SKIP_NOT_REGULAR;
		goto skip;
	}
	if ((rc = seen_add(&a->files, &st, &was))) {
		free(path);
		return rc;
	}
	if (was) {
		why = TH_SKIP_DUPLICATE;
		goto skip;
	}
	nd->size = (uint64_t)st.st_size;
	if (th_archive_s3_name(base, &nd->ts)) {
		nd->tie = base;
		nd->ledger = strdup(base);
	} else {
		rc = first_event_time(a, path, &nd->ts);
		if (rc == TH_ENOMEM) {
			free(path);
			return rc;
		}
		if (rc) {
			why = rc == TH_EIO ? TH_SKIP_UNREADABLE : TH_SKIP_NOT_CLOUDTRAIL;
			goto skip;
		}
		nd->tie = "";
		/* path relative to the walked root + size + mtime: a file that
		 * changed is a new file to the resume ledger */
		size_t rl = strlen(walk_root);
		const char *rel = strncmp(path, walk_root, rl) == 0 ? path + rl : path;
		while (*rel == '/')
			rel++;
		size_t n = strlen(rel) + 64;
		if ((nd->ledger = malloc(n)))
			snprintf(nd->ledger, n, "%s|%" PRIu64 "|%lld", rel, nd->size,
				 (long long)st.st_mtime);
	}
	if (!nd->ledger) {
		free(path);
		return TH_ENOMEM;
	}
	nd->path = path;
	nd->seq = a->seq++;
	return 0;
skip:
	if (a->on_skip)
		a->on_skip(a->ctx, path, why, detail);
	free(path);
	return 1;
}

/* ---- directory listings ---- */

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* @returns 0 with a sorted listing, TH_EIO (reported), TH_ENOMEM. */
static int list_dir(struct th_archive *a, const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;
	*names = NULL;
	*n = 0;
	if (!d) {
		if (a->on_skip)
			a->on_skip(a->ctx, dir,
				   errno == ELOOP ? TH_SKIP_SYMLINK_LOOP : TH_SKIP_UNREADABLE,
				   strerror(errno));
		return TH_EIO;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			char **p = realloc(*names, nc * sizeof(*p));
			if (!p)
				goto oom;
			*names = p;
			cap = nc;
		}
		if (!((*names)[*n] = strdup(de->d_name)))
			goto oom;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*names, *n, sizeof(**names), cmp_str);
	return 0;
oom:
	closedir(d);
	for (size_t i = 0; i < *n; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
	*n = 0;
	return TH_ENOMEM;
}

static void free_names(char **names, size_t n, size_t from)
{
	for (size_t i = from; i < n; i++)
		free(names[i]);
	free(names);
}

/* A directory reached for the second time is a link loop (or a second
 * link to the same data): reported, not walked again.
 * @returns 0 (walk it), 1 (skipped), TH_ENOMEM. */
static int enter_dir(struct th_archive *a, const char *path, const struct stat *st)
{
	bool was;
	int rc = seen_add(&a->dirs, st, &was);
	if (rc)
		return rc;
	if (was) {
		if (a->on_skip)
			a->on_skip(a->ctx, path, TH_SKIP_SYMLINK_LOOP,
				   "directory already walked (link loop or second link)");
		return 1;
	}
	return 0;
}

static bool is_year(const char *name)
{
	return strlen(name) == 4 && digits(name, 4);
}

static int add_stream(struct th_archive *a, struct stream *s)
{
	if (a->ns == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 16;
		struct stream **p = realloc(a->s, nc * sizeof(*p));
		if (!p)
			return TH_ENOMEM;
		a->s = p;
		a->cap = nc;
	}
	a->s[a->ns++] = s;
	return 0;
}

static int cmp_node(const struct node *x, const struct node *y)
{
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	int c = strcmp(x->tie, y->tie);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_node_q(const void *x, const void *y)
{
	return cmp_node(x, y);
}

static void stream_free(struct stream *s)
{
	if (!s)
		return;
	for (size_t i = s->i; i < s->n; i++)
		node_free(&s->items[i]);
	free(s->items);
	for (int d = 0; d < s->depth; d++) {
		free(s->stk[d].dir);
		free_names(s->stk[d].names, s->stk[d].n, s->stk[d].i);
	}
	free(s->stk);
	node_free(&s->head);
	free(s);
}

static int push_frame(struct stream *s, char *dir, char **names, size_t n)
{
	if (s->depth == s->cap) {
		int nc = s->cap ? s->cap * 2 : 8;
		struct frame *p = realloc(s->stk, (size_t)nc * sizeof(*p));
		if (!p)
			return TH_ENOMEM;
		s->stk = p;
		s->cap = nc;
	}
	s->stk[s->depth++] = (struct frame){dir, names, n, 0};
	return 0;
}

/* Advance a stream to its next file. @returns 0 (head set), TH_ENOTFOUND, TH_ENOMEM. */
static int stream_advance(struct th_archive *a, struct stream *s)
{
	int rc;
	s->has_head = false;
	if (!s->stk) {
		if (s->i >= s->n)
			return TH_ENOTFOUND;
		s->head = s->items[s->i++];
		s->has_head = true;
		return 0;
	}
	while (s->depth > 0) {
		struct frame *f = &s->stk[s->depth - 1];
		if (f->i >= f->n) {
			free(f->dir);
			free_names(f->names, f->n, f->i);
			s->depth--;
			continue;
		}
		char *name = f->names[f->i++];
		char *path = join(f->dir, name);
		free(name);
		if (!path)
			return TH_ENOMEM;
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			char **names;
			size_t n;
			if ((rc = enter_dir(a, path, &st)) == 0 &&
			    (rc = list_dir(a, path, &names, &n)) == 0) {
				if ((rc = push_frame(s, path, names, n))) {
					free_names(names, n, 0);
					free(path);
					return rc;
				}
				continue;
			}
			free(path);
			if (rc == TH_ENOMEM)
				return rc;
			continue;
		}
		rc = classify(a, path, s->walk_root, &s->head);
		if (rc == 0) {
			s->has_head = true;
			return 0;
		}
		if (rc < 0)
			return rc;
	}
	return TH_ENOTFOUND;
}

/* Plan a directory: a time-ordered subtree becomes one lazy stream, any other
 * directory one sorted stream of its loose files plus its subdirectories. */
static int plan_dir(struct th_archive *a, char *dir, const char *walk_root)
{
	char **names = NULL;
	size_t n = 0;
	struct stream *s = NULL;
	int rc = list_dir(a, dir, &names, &n);
	if (rc) {
		free(dir);
		return rc == TH_EIO ? 0 : rc;
	}
	bool timed = false;
	for (size_t i = 0; i < n && !timed; i++) {
		struct stat st;
		char *p = is_year(names[i]) ? join(dir, names[i]) : NULL;
		timed = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
		free(p);
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		rc = TH_ENOMEM;
		goto cleanup;
	}
	s->walk_root = walk_root;
	if (timed) {
		if ((rc = push_frame(s, dir, names, n)))
			goto cleanup;
		dir = NULL;
		names = NULL;
		n = 0;
		rc = add_stream(a, s);
		if (!rc)
			s = NULL;
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		char *path = join(dir, names[i]);
		struct stat st;
		if (!path) {
			rc = TH_ENOMEM;
			goto cleanup;
		}
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			if ((rc = enter_dir(a, path, &st)) == 1) {
				free(path);
				continue;
			}
			if (rc || (rc = plan_dir(a, path, walk_root)))
				goto cleanup;
			continue;
		}
		struct node nd;
		if ((rc = classify(a, path, walk_root, &nd)) == 1)
			continue;
		if (rc)
			goto cleanup;
		struct node *p = realloc(s->items, (s->n + 1) * sizeof(*p));
		if (!p) {
			node_free(&nd);
			rc = TH_ENOMEM;
			goto cleanup;
		}
		s->items = p;
		s->items[s->n++] = nd;
	}
	rc = 0;
	if (s->n) {
		qsort(s->items, s->n, sizeof(*s->items), cmp_node_q);
		if ((rc = add_stream(a, s)))
			goto cleanup;
		s = NULL;
	}
cleanup:
	stream_free(s);
	free_names(names, n, 0);
	free(dir);
	return rc;
}

/* ---- the merge ---- */

static bool heap_less(struct th_archive *a, size_t i, size_t j)
{
	return cmp_node(&a->s[a->heap[i]]->head, &a->s[a->heap[j]]->head) < 0;
}

static void heap_swap(struct th_archive *a, size_t i, size_t j)
{
	size_t t = a->heap[i];
	a->heap[i] = a->heap[j];
	a->heap[j] = t;
}

static void heap_down(struct th_archive *a, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < a->nheap && heap_less(a, l, m))
			m = l;
		if (r < a->nheap && heap_less(a, r, m))
			m = r;
		if (m == i)
			return;
		heap_swap(a, i, m);
		i = m;
	}
}

int th_archive_new(struct th_archive **ap, char *const *paths, int n, th_archive_skip_fn on_skip,
		   void *ctx)
{
	struct th_archive *a = calloc(1, sizeof(*a));
	struct stream *ex = NULL;
	int rc = TH_ENOMEM;
	*ap = NULL;
	if (!a)
		return TH_ENOMEM;
	a->on_skip = on_skip;
	a->ctx = ctx;
	if (!(ex = calloc(1, sizeof(*ex))) || !(a->roots = calloc((size_t)n + 1, sizeof(char *))))
		goto cleanup;
	for (int i = 0; i < n; i++) {
		const char *arg = paths[i];
		struct stat st;
		struct node nd = {.ts = INT64_MIN, .tie = "", .explicit_arg = true};
		if (strcmp(arg, "-") != 0 && stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
			char *dir = strdup(arg);
			if (!dir || !(a->roots[a->nroots++] = strdup(arg))) {
				free(dir);
				goto cleanup;
			}
			if ((rc = enter_dir(a, arg, &st)) == 1) {
				free(dir);
				continue;
			}
			if (rc || (rc = plan_dir(a, dir, a->roots[a->nroots - 1])))
				goto cleanup;
			rc = TH_ENOMEM;
			continue;
		}
		if (!(nd.path = strdup(arg)))
			goto cleanup;
		if (strcmp(arg, "-") == 0 || stat(arg, &st) != 0 || !S_ISREG(st.st_mode)) {
			/* stdin, a pipe, or a file that will fail to open (reported
			 * by the caller): first, in the order given, never peeked */
			nd.stream = strcmp(arg, "-") == 0 || stat(arg, &st) == 0;
			nd.ledger = strdup(arg);
		} else {
			const char *base = base_of(nd.path);
			bool was;
			/* A file named twice (overlapping globs) or named and also
			 * inside a named directory is one file: read once, like a
			 * file reached twice by walking. */
			if (seen_add(&a->files, &st, &was)) {
				node_free(&nd);
				goto cleanup;
			}
			if (was) {
				if (on_skip)
					on_skip(ctx, arg, TH_SKIP_DUPLICATE, "");
				node_free(&nd);
				continue;
			}
			nd.size = (uint64_t)st.st_size;
			if (th_archive_s3_name(base, &nd.ts)) {
				nd.tie = base;
				nd.ledger = strdup(base);
			} else {
				size_t ln = strlen(arg) + 64;
				int64_t ts;
				if (first_event_time(a, arg, &ts) == 0)
					nd.ts = ts;
				if ((nd.ledger = malloc(ln)))
					snprintf(nd.ledger, ln, "%s|%" PRIu64 "|%lld", arg,
						 nd.size, (long long)st.st_mtime);
			}
		}
		nd.seq = a->seq++;
		struct node *p = nd.ledger ? realloc(ex->items, (ex->n + 1) * sizeof(*p)) : NULL;
		if (!p) {
			node_free(&nd);
			goto cleanup;
		}
		ex->items = p;
		ex->items[ex->n++] = nd;
	}
	if (ex->n) {
		qsort(ex->items, ex->n, sizeof(*ex->items), cmp_node_q);
		if (add_stream(a, ex))
			goto cleanup;
	} else {
		stream_free(ex);
	}
	ex = NULL;
	rc = 0;
	*ap = a;
	a = NULL;
cleanup:
	stream_free(ex);
	th_archive_destroy(a);
	return rc;
}

int th_archive_next(struct th_archive *a, const struct th_archive_file **f)
{
	int rc;
	node_free(&a->cur);
	if (!a->started) {
		a->started = true;
		if (!(a->heap = calloc(a->ns + 1, sizeof(*a->heap))))
			return TH_ENOMEM;
		for (size_t i = 0; i < a->ns; i++) {
			rc = stream_advance(a, a->s[i]);
			if (rc == TH_ENOMEM)
				return rc;
			if (rc == 0)
				a->heap[a->nheap++] = i;
		}
		for (size_t i = a->nheap; i-- > 0;)
			heap_down(a, i);
	}
	if (!a->nheap)
		return TH_ENOTFOUND;
	struct stream *s = a->s[a->heap[0]];
	a->cur = s->head;
	memset(&s->head, 0, sizeof(s->head));
	rc = stream_advance(a, s);
	if (rc == TH_ENOMEM)
		return rc;
	if (rc) {
		a->heap[0] = a->heap[--a->nheap];
	}
	if (a->nheap)
		heap_down(a, 0);
	a->out = (struct th_archive_file){a->cur.path, a->cur.ledger, a->cur.ts, a->cur.size,
					  a->cur.explicit_arg, a->cur.stream};
	*f = &a->out;
	return 0;
}

void th_archive_destroy(struct th_archive *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->ns; i++)
		stream_free(a->s[i]);
	free(a->s);
	free(a->heap);
	seen_free(&a->dirs);
	seen_free(&a->files);
	th_parser_destroy(a->parser);
	for (int i = 0; i < a->nroots; i++)
		free(a->roots[i]);
	free(a->roots);
	node_free(&a->cur);
	free(a);
}
