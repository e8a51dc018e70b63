/*
 * The state store's bulk loader: a restore's changelog records, in the
 * changelog's order, into an empty store in key order (see state.h).
 *
 * Why: a restore put each record where its random key falls in the B-tree,
 * in bounded transactions, so each commit rewrote a page per record (~4 GB
 * of writes for 1M keys) and left pages ~70 % full. Sorted, the records go in
 * with MDB_APPEND: each leaf is filled and written once.
 *
 * How: an external merge sort, the textbook one. Records are gathered in an
 * arena of about the caller's memory budget; a full arena is sorted by key
 * (arrival order breaks ties, so a key's last record is found), cut to one
 * record per key, and appended as a sorted run to the load's one unnamed
 * temporary file (O_TMPFILE: a crash leaves nothing behind; one descriptor
 * per load however many runs, as a store has its own two). finish() merges
 * the runs, each read at its offset through a small buffer, the later run
 * winning a key both hold, and appends the survivors to the store in
 * transactions of CHUNK_BYTES.
 *
 * A record, in the arena and in a run: u32 key length, u32 value length
 * (DELETED for a deletion), the key, the value.
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include "trailhound/state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state_int.h"
#include "trailhound/log.h"

#define DELETED UINT32_MAX
#define HDR 8
/* One LMDB transaction of the load: LMDB keeps a private copy of each page
 * a transaction writes (and keeps them for reuse until the store closes),
 * so this bounds that memory; a few MB per commit cost nothing in speed. */
#define CHUNK_BYTES ((size_t)4 << 20)
#define RUN_IO_BUF ((size_t)64 << 10)
#define SPILL_IO_BUF ((size_t)256 << 10)
#define ARENA_FIRST ((size_t)1 << 20)

/* A spilled run being merged: its bytes [pos, end) of the temporary file
 * not yet read, and its current record. */
struct run {
	uint64_t pos, end;
	unsigned char *io; /* read ahead: io[io_off, io_len) */
	size_t io_off, io_len;
	unsigned char *buf; /* key then value of the current record */
	size_t cap;
	uint32_t klen, vlen;
	bool live;
};

/* A record of the arena while sorting. */
struct sorted {
	const unsigned char *key;
	uint32_t klen;
	size_t off; /* arrival order: offsets grow */
};

struct th_state_load {
	struct th_state *st;
	char *dir;
	size_t mem;
	unsigned char *arena;
	size_t used, cap;
	size_t nrecs; /* in the arena */
	FILE *tmp;	  /* the runs, one after another */
	uint64_t tmp_end; /* bytes written to it */
	struct run *runs;
	size_t nruns;
	/* the transaction being gathered: records copied, then appended */
	unsigned char *chunk;
	size_t chunk_used, chunk_cap;
	struct th_state_rec *recs;
	size_t nchunk, recs_cap;
	struct th_state_load_stats stats;
};

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static int key_cmp(const unsigned char *a, uint32_t alen, const unsigned char *b, uint32_t blen)
{
	/* LMDB's default order: bytes, then the shorter first */
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int sorted_cmp(const void *pa, const void *pb)
{
	const struct sorted *a = pa, *b = pb;
	int c = key_cmp(a->key, a->klen, b->key, b->klen);
	if (c)
		return c;
	return a->off < b->off ? -1 : a->off > b->off;
}

int th_state_load_new(struct th_state_load **ldp, struct th_state *st, const char *tmp_dir,
		      size_t mem_bytes)
{
	struct th_state_load *ld;
	*ldp = NULL;
	if (th_state_has_records(st)) {
		th_log_err("state", "bulk load: the store is not empty");
		return TH_EINVAL;
	}
	if (!(ld = calloc(1, sizeof(*ld))))
		return TH_ENOMEM;
	ld->st = st;
	ld->mem = mem_bytes > HDR ? mem_bytes : HDR;
	if (!(ld->dir = strdup(tmp_dir))) {
		free(ld);
		return TH_ENOMEM;
	}
	*ldp = ld;
	return 0;
}

static int reserve(unsigned char **buf, size_t *cap, size_t need, size_t first)
{
	size_t n = *cap ? *cap : first;
	unsigned char *nb;
	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	if (!(nb = realloc(*buf, n)))
		return TH_ENOMEM;
	*buf = nb;
	*cap = n;
	return 0;
}

/* An unnamed file in the store's directory, so a run is on the store's disk
 * and a crash leaves no file; a filesystem without O_TMPFILE gets a named
 * one, unlinked at once. */
static FILE *temp_file(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	FILE *f;
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];
		if (snprintf(path, sizeof(path), "%s/.restore-run-XXXXXX", dir) >= (int)sizeof(path)) {
			errno = ENAMETOOLONG;
			return NULL;
		}
		if ((fd = mkstemp(path)) >= 0)
			unlink(path);
	}
	if (fd < 0)
		return NULL;
	if (!(f = fdopen(fd, "w+b"))) {
		close(fd);
		return NULL;
	}
	setvbuf(f, NULL, _IOFBF, SPILL_IO_BUF);
	return f;
}

static int io_error(const char *what, const char *dir)
{
	int e = errno;
	th_log_err("state", "bulk load: %s in %s: %s", what, dir, strerror(e));
	return e == ENOSPC || e == EDQUOT ? TH_ENOSPC : TH_EIO;
}

/* The arena's records sorted by key, arrival order within a key.
 * Returns NULL (out of memory) or an array of ld->nrecs. */
static struct sorted *sort_arena(struct th_state_load *ld)
{
	struct sorted *s = malloc((ld->nrecs ? ld->nrecs : 1) * sizeof(*s));
	size_t off = 0;
	if (!s)
		return NULL;
	for (size_t i = 0; i < ld->nrecs; i++) {
		uint32_t klen = get_u32(ld->arena + off), vlen = get_u32(ld->arena + off + 4);
		s[i] = (struct sorted){ld->arena + off + HDR, klen, off};
		off += HDR + klen + (vlen == DELETED ? 0 : vlen);
	}
	qsort(s, ld->nrecs, sizeof(*s), sorted_cmp);
	return s;
}

/* Sort the arena and write it out as a run: one record per key, its last. */
static int spill(struct th_state_load *ld)
{
	struct sorted *s = sort_arena(ld);
	struct run *nr;
	uint64_t start = ld->tmp_end;
	int rc = 0;
	if (!s)
		return TH_ENOMEM;
	if (!(nr = realloc(ld->runs, (ld->nruns + 1) * sizeof(*nr)))) {
		rc = TH_ENOMEM;
		goto out;
	}
	ld->runs = nr;
	if (!ld->tmp && !(ld->tmp = temp_file(ld->dir))) {
		rc = io_error("cannot make a temporary file", ld->dir);
		goto out;
	}
	for (size_t i = 0; i < ld->nrecs; i++) {
		if (i + 1 < ld->nrecs &&
		    key_cmp(s[i].key, s[i].klen, s[i + 1].key, s[i + 1].klen) == 0)
			continue; /* a later record of the same key follows */
		const unsigned char *rec = ld->arena + s[i].off;
		uint32_t vlen = get_u32(rec + 4);
		size_t len = HDR + s[i].klen + (vlen == DELETED ? 0 : vlen);
		if (fwrite(rec, 1, len, ld->tmp) != len) {
			rc = io_error("writing a sorted run", ld->dir);
			goto out;
		}
		ld->tmp_end += len;
		ld->stats.spilled_bytes += len;
	}
	/* the merge reads it with pread(): nothing may stay in stdio's buffer */
	if (fflush(ld->tmp) != 0) {
		rc = io_error("writing a sorted run", ld->dir);
		goto out;
	}
	ld->runs[ld->nruns++] = (struct run){.pos = start, .end = ld->tmp_end};
	ld->stats.runs++;
	ld->used = ld->nrecs = 0;
out:
	free(s);
	return rc;
}

int th_state_load_add(struct th_state_load *ld, const void *key, size_t klen, const void *val,
		      size_t vlen)
{
	size_t len;
	int rc;
	if (!th_state_key_is_data(key, klen) || (val && vlen >= DELETED))
		return TH_EINVAL;
	len = HDR + klen + (val ? vlen : 0);
	/* a full arena spills first; a record larger than the budget gets an
	 * arena of its own size */
	if (ld->used && ld->used + len > ld->mem && (rc = spill(ld)))
		return rc;
	if ((rc = reserve(&ld->arena, &ld->cap, ld->used + len,
			  ld->mem < ARENA_FIRST ? ld->mem : ARENA_FIRST)))
		return rc;
	uint32_t h[2] = {(uint32_t)klen, val ? (uint32_t)vlen : DELETED};
	unsigned char *p = ld->arena + ld->used;
	memcpy(p, h, HDR);
	memcpy(p + HDR, key, klen);
	if (val && vlen)
		memcpy(p + HDR + klen, val, vlen);
	ld->used += len;
	ld->nrecs++;
	ld->stats.records++;
	return 0;
}

static int chunk_flush(struct th_state_load *ld)
{
	size_t off = 0;
	int rc;
	if (!ld->nchunk)
		return 0;
	/* the records point into the chunk only now: it may have moved */
	for (size_t i = 0; i < ld->nchunk; i++) {
		ld->recs[i].key = ld->chunk + off;
		ld->recs[i].val = ld->chunk + off + ld->recs[i].klen;
		off += ld->recs[i].klen + ld->recs[i].vlen;
	}
	if ((rc = th_state_append_sorted(ld->st, ld->recs, ld->nchunk)))
		return rc;
	ld->stats.commits++;
	ld->stats.written += ld->nchunk;
	ld->nchunk = ld->chunk_used = 0;
	return 0;
}

/* The next key of the merge, in order: copied into the chunk. */
static int emit(struct th_state_load *ld, const unsigned char *key, uint32_t klen,
		const unsigned char *val, uint32_t vlen)
{
	int rc;
	if (vlen == DELETED)
		return 0; /* the store starts empty: nothing to delete */
	if (ld->chunk_used && ld->chunk_used + klen + vlen > CHUNK_BYTES && (rc = chunk_flush(ld)))
		return rc;
	if ((rc = reserve(&ld->chunk, &ld->chunk_cap, ld->chunk_used + klen + vlen, CHUNK_BYTES)))
		return rc;
	if (ld->nchunk == ld->recs_cap) {
		size_t n = ld->recs_cap ? ld->recs_cap * 2 : 4096;
		struct th_state_rec *nr = realloc(ld->recs, n * sizeof(*nr));
		if (!nr)
			return TH_ENOMEM;
		ld->recs = nr;
		ld->recs_cap = n;
	}
	memcpy(ld->chunk + ld->chunk_used, key, klen);
	if (vlen)
		memcpy(ld->chunk + ld->chunk_used + klen, val, vlen);
	ld->recs[ld->nchunk++] = (struct th_state_rec){NULL, klen, NULL, vlen};
	ld->chunk_used += klen + vlen;
	return 0;
}

/* @p n bytes of a run into @p dst, refilling its read-ahead from the file. */
static int run_read(struct th_state_load *ld, struct run *r, unsigned char *dst, size_t n)
{
	while (n) {
		if (r->io_off == r->io_len) {
			uint64_t left = r->end - r->pos;
			size_t want = left < RUN_IO_BUF ? (size_t)left : RUN_IO_BUF;
			ssize_t got;
			if (!want) {
				th_log_err("state", "bulk load: a sorted run in %s ends inside a record",
					   ld->dir);
				return TH_EIO;
			}
			if (!r->io && !(r->io = malloc(RUN_IO_BUF)))
				return TH_ENOMEM;
			got = pread(fileno(ld->tmp), r->io, want, (off_t)r->pos);
			if (got <= 0) {
				if (got == 0)
					errno = EIO; /* the file is shorter than written */
				return io_error("reading a sorted run", ld->dir);
			}
			r->pos += (uint64_t)got;
			r->io_off = 0;
			r->io_len = (size_t)got;
		}
		size_t take = r->io_len - r->io_off < n ? r->io_len - r->io_off : n;
		memcpy(dst, r->io + r->io_off, take);
		r->io_off += take;
		dst += take;
		n -= take;
	}
	return 0;
}

/* A run's next record, or its end (r->live false). */
static int run_next(struct th_state_load *ld, struct run *r)
{
	unsigned char h[HDR];
	int rc;
	if (r->pos == r->end && r->io_off == r->io_len) {
		r->live = false;
		return 0;
	}
	if ((rc = run_read(ld, r, h, HDR)))
		return rc;
	r->klen = get_u32(h);
	r->vlen = get_u32(h + 4);
	size_t len = (size_t)r->klen + (r->vlen == DELETED ? 0 : r->vlen);
	if (reserve(&r->buf, &r->cap, len ? len : 1, 4096))
		return TH_ENOMEM;
	if ((rc = run_read(ld, r, r->buf, len)))
		return rc;
	r->live = true;
	return 0;
}

/* Merge the runs: the least key of all runs' current records, from the
 * latest run holding it (runs are in arrival order). A linear pass over
 * the runs per key: there are few (the changelog's bytes / the budget). */
static int merge_runs(struct th_state_load *ld)
{
	int rc;
	for (size_t i = 0; i < ld->nruns; i++)
		if ((rc = run_next(ld, &ld->runs[i])))
			return rc;
	for (;;) {
		struct run *best = NULL;
		for (size_t i = 0; i < ld->nruns; i++) {
			struct run *r = &ld->runs[i];
			if (r->live && (!best || key_cmp(r->buf, r->klen, best->buf, best->klen) <= 0))
				best = r; /* ties go to the later run */
		}
		if (!best)
			return 0;
		if ((rc = emit(ld, best->buf, best->klen, best->buf + best->klen, best->vlen)))
			return rc;
		for (size_t i = 0; i < ld->nruns; i++) {
			struct run *r = &ld->runs[i];
			if (r != best && r->live &&
			    key_cmp(r->buf, r->klen, best->buf, best->klen) == 0 &&
			    (rc = run_next(ld, r)))
				return rc;
		}
		if ((rc = run_next(ld, best)))
			return rc;
	}
}

/* Everything in the arena (no run spilled): straight from the sort. */
static int write_arena(struct th_state_load *ld)
{
	struct sorted *s = sort_arena(ld);
	int rc = 0;
	if (!s)
		return TH_ENOMEM;
	for (size_t i = 0; i < ld->nrecs && !rc; i++) {
		if (i + 1 < ld->nrecs &&
		    key_cmp(s[i].key, s[i].klen, s[i + 1].key, s[i + 1].klen) == 0)
			continue;
		const unsigned char *rec = ld->arena + s[i].off;
		uint32_t vlen = get_u32(rec + 4);
		rc = emit(ld, rec + HDR, s[i].klen, rec + HDR + s[i].klen, vlen);
	}
	free(s);
	return rc;
}

static void arena_free(struct th_state_load *ld)
{
	free(ld->arena);
	ld->arena = NULL;
	ld->used = ld->cap = ld->nrecs = 0;
}

int th_state_load_finish(struct th_state_load *ld)
{
	int rc;
	if (ld->nruns == 0) {
		rc = write_arena(ld);
	} else {
		if (ld->nrecs && (rc = spill(ld)))
			return rc;
		arena_free(ld); /* the merge needs only the runs' buffers */
		rc = merge_runs(ld);
	}
	if (!rc)
		rc = chunk_flush(ld);
	arena_free(ld);
	return rc;
}

void th_state_load_get_stats(const struct th_state_load *ld, struct th_state_load_stats *out)
{
	*out = ld->stats;
}

void th_state_load_destroy(struct th_state_load *ld)
{
	if (!ld)
		return;
	for (size_t i = 0; i < ld->nruns; i++) {
		free(ld->runs[i].io);
		free(ld->runs[i].buf);
	}
	free(ld->runs);
	if (ld->tmp)
		fclose(ld->tmp);
	free(ld->arena);
	free(ld->chunk);
	free(ld->recs);
	free(ld->dir);
	free(ld);
}
