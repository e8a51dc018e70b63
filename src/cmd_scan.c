/*
 * `trailhound scan`: the offline pipeline. Reads CloudTrail files, directories
 * of them (an S3 archive, in delivery order: see archive.h) or stdin, runs
 * parser → detector, writes alerts as JSON lines on stdout and a summary on
 * stderr. The same detector runs in the Kafka worker; scan is how
 * investigators, backtests and tests run it over files.
 *
 * --jobs N splits the events by account the way `trailhound produce` keys
 * them for Kafka (murmur2 of the account, N partitions), one detector and one
 * state store per partition, each in its own thread. The reading thread
 * frames and parses every record (rejects and dead letters stay in one
 * place) and hands the parsed event's fields (a flat copy of its strings,
 * a few hundred bytes) to its partition's queue, so each record is parsed
 * once whatever N is: a second parse in the partition cost as much CPU as
 * the first. Alerts are buffered and written at the end ordered by eventTime,
 * then upgrade order (an upgrade after the alert it upgrades), alert ID and
 * JSON text: the output is byte-identical for any N.
 *
 * With --state DIR, every file read to the end is appended to DIR/files.done
 * once every partition has committed its events; a later run skips those
 * files, so a nightly backtest of an archive reads only the new ones.
 */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trailhound/archive.h"
#include "trailhound/avro_alert.h"
#include "trailhound/log.h"
#include "trailhound/registry.h"
#include "trailhound/config.h"
#include "trailhound/detect.h"
#include "trailhound/hash.h"
#include "trailhound/input.h"
#include "trailhound/variation.h"

#define TH_SCAN_MAX_JOBS 256
#define BATCH_BYTES (1u << 20)
#define QUEUE_MAX 4
#define ITEM_FILE_END UINT32_MAX

/* One input file; owned by the reading thread, freed once every partition
 * is past it. Partitions borrow the path for the alerts' input field. */
struct fent {
	char *path, *ledger;
	uint64_t idx;
	bool failed; /* not read to the end: never named done */
};

/* A queued event: header, then len bytes of packed event (pack_event), padded
 * to 8 bytes. */
struct item {
	uint32_t len; /* ITEM_FILE_END marks the end of file f */
	uint32_t pad_;
	uint64_t offset;
	struct fent *f;
};

struct batch {
	struct th_wbuf w;
	struct batch *next;
};

/* One buffered alert: its sort key and where its bytes sit in the blobs. */
struct abuf {
	int64_t t;
	char id[TH_ALERT_ID_LEN + 1];
	int variation;
	int depth; /* place in an upgrade chain: an upgrade comes after what it upgrades */
	char *account;
	size_t json_off, json_len, avro_off, avro_len;
	int part;
};

struct scan;

struct part {
	int idx;
	struct scan *s;
	struct th_detector *det;
	struct th_state *st;
	struct th_avro_alert *avro;
	pthread_t thr;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct batch *qhead, *qtail, *filling;
	struct batch *spare; /* consumed batches for reuse (under mu) */
	int qlen, nspare;
	bool eof;
	struct abuf *alerts;
	size_t nalerts, cap;
	struct th_wbuf json, avro_blob, msg;
	const struct fent *cur;
	uint64_t since_commit;
	FILE *spool;	/* --state: DIR[/pN]/alerts.pending, alerts not yet delivered */
	size_t spooled; /* alerts[0..spooled) are in the spool */
	/* --state: how far into the current file this partition has learnt */
	uint64_t seen_idx, skip_below, next_off;
	bool file_events;
	_Atomic uint64_t files_done, nalert_atomic;
	_Atomic int fatal;
};

struct scan {
	struct part *parts;
	int nparts;
	bool threaded, persistent;
	FILE *dead;
	const char *dead_path;
	int dead_err; /* errno of the first failed dead-letter write, 0 = none */
	int out_err;  /* errno of the first failed write to stdout */
	FILE *avro_out;
	const char *input_name;
	uint64_t read, parsed, rejected_by[TH_REJECT__COUNT], alerts;
	uint64_t batch;
	uint64_t inputs_failed; /* explicit inputs that could not be opened or read to the end */
	uint64_t files_read, skipped_by[TH_SKIP__COUNT];
	uint64_t bytes_total, bytes_done;
	int fatal;
	bool progress, quiet_rejects, parse_only, counting;
	double t0, last_progress;
	struct th_parser *parser;
	struct th_input *in;
	struct fent *curf;
	/* resume ledger */
	FILE *ledger;
	struct ledger_ent *done;
	struct fent **fents;
	size_t nfents, capfents, fents_freed;
};

struct ledger_ent {
	UT_hash_handle hh;
	char key[];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t alerts_so_far(const struct scan *s)
{
	uint64_t n = 0;
	for (int i = 0; i < s->nparts; i++)
		n += atomic_load(&s->parts[i].nalert_atomic);
	return n;
}

static void show_progress(struct scan *s, bool done)
{
	double t = now_s();
	if (!done && t - s->last_progress < 0.5)
		return;
	s->last_progress = t;
	uint64_t bytes = s->bytes_done + (s->in ? th_input_bytes_read(s->in) : 0);
	char eta[32] = "";
	/* an estimate from under two seconds of reading says little */
	if (s->bytes_total && bytes && !done && t - s->t0 >= 2) {
		double left = (t - s->t0) * (double)(s->bytes_total - (bytes < s->bytes_total
									? bytes
									: s->bytes_total)) /
			      (double)bytes;
		snprintf(eta, sizeof(eta), ", ETA %dm%02ds", (int)(left / 60), (int)left % 60);
	}
	fprintf(stderr,
		"\r%" PRIu64 " files, %" PRIu64 " events, %.1f MB, %" PRIu64
		" alerts, %.0f events/s%s%s",
		s->files_read, s->read, (double)bytes / 1e6, alerts_so_far(s),
		(double)s->read / (t - s->t0 + 1e-9), eta, done ? "\n" : "   ");
}

/* ---- partitions ---- */

/* The partition `trailhound produce` sends an account to: librdkafka's
 * murmur2 partitioner (the Java client's), so scan --jobs N and a topic of
 * N partitions split the accounts alike. */
static int partition_of(const struct th_event *ev, int n)
{
	const char *acct = th_event_account(ev);
	if (n <= 1)
		return 0;
	if (!acct)
		acct = "";
	return (int)rd_kafka_msg_partitioner_murmur2(NULL, acct, strlen(acct), n, NULL, NULL);
}

static int alerts_grow(struct part *p)
{
	if (p->nalerts == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		struct abuf *q = realloc(p->alerts, nc * sizeof(*q));
		if (!q)
			return TH_ENOMEM;
		p->alerts = q;
		p->cap = nc;
	}
	return 0;
}

static int on_alert(void *ctx, const struct th_alert *a)
{
	struct part *p = ctx;
	struct scan *s = p->s;
	struct abuf *ab;
	if (alerts_grow(p))
		return TH_ENOMEM;
	ab = &p->alerts[p->nalerts];
	memset(ab, 0, sizeof(*ab));
	ab->t = a->event_time_ms;
	memcpy(ab->id, a->alert_id, sizeof(ab->id));
	ab->variation = a->variation;
	ab->part = p->idx;
	if (a->upgrade_of)
		for (size_t i = p->nalerts; i-- > 0;)
			if (strcmp(p->alerts[i].id, a->upgrade_of) == 0) {
				ab->depth = p->alerts[i].depth + 1;
				break;
			}
	if (!(ab->account = strdup(a->account_id ? a->account_id : "")))
		return TH_ENOMEM;
	ab->json_off = p->json.len;
	th_alert_to_json(a, &p->json);
	th_put_u8(&p->json, '\n');
	ab->json_len = p->json.len - ab->json_off;
	if (s->avro_out) {
		/* Length-prefixed so a reader can split the file back into the
		 * exact Kafka message values the worker would produce. */
		int rc = th_avro_alert_encode(p->avro, a, &p->msg);
		if (rc) {
			free(ab->account);
			return rc;
		}
		uint32_t n = (uint32_t)p->msg.len;
		uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
				  (uint8_t)n};
		ab->avro_off = p->avro_blob.len;
		th_put_bytes(&p->avro_blob, len, 4);
		th_put_bytes(&p->avro_blob, p->msg.p, n);
		ab->avro_len = p->avro_blob.len - ab->avro_off;
	}
	if (p->json.oom || p->avro_blob.oom) {
		free(ab->account);
		return TH_ENOMEM;
	}
	p->nalerts++;
	atomic_fetch_add(&p->nalert_atomic, 1);
	return 0;
}

/*
 * The alert spool. Alerts reach stdout only at the end of a run (sorted, the
 * same for any --jobs), but a commit makes the state remember them (dedup,
 * upgrades) and the ledger then names their files done: a --state run killed
 * after a commit (Ctrl-C, OOM killer, kill -9) lost those alerts for good, as
 * the next run skips the files and would suppress them anyway. So before each
 * commit the alerts raised since the last one are appended to the
 * partition's alerts.pending and synced; the next run writes them with its
 * own, and a run that delivered its alerts empties the spool.
 */
#define SPOOL_MAGIC 0x31505354u /* "TSP1" */
#define SPOOL_FIELD_MAX (64u << 20)

struct spool_hdr {
	uint32_t magic, account_len, json_len, avro_len;
	int64_t t;
	int32_t depth, variation;
	char id[TH_ALERT_ID_LEN + 1];
	char pad_[7];
};

static int spool_write(struct part *p)
{
	if (!p->spool || p->spooled == p->nalerts)
		return 0;
	for (size_t i = p->spooled; i < p->nalerts; i++) {
		const struct abuf *ab = &p->alerts[i];
		struct spool_hdr h;
		memset(&h, 0, sizeof(h));
		h.magic = SPOOL_MAGIC;
		h.account_len = (uint32_t)strlen(ab->account);
		h.json_len = (uint32_t)ab->json_len;
		h.avro_len = (uint32_t)ab->avro_len;
		h.t = ab->t;
		h.depth = ab->depth;
		h.variation = ab->variation;
		memcpy(h.id, ab->id, sizeof(h.id));
		if (fwrite(&h, sizeof(h), 1, p->spool) != 1 ||
		    fwrite(ab->account, 1, h.account_len, p->spool) != h.account_len ||
		    fwrite(p->json.p + ab->json_off, 1, ab->json_len, p->spool) != ab->json_len ||
		    (ab->avro_len && fwrite(p->avro_blob.p + ab->avro_off, 1, ab->avro_len,
					    p->spool) != ab->avro_len))
			return TH_EIO;
	}
	if (fflush(p->spool) || fsync(fileno(p->spool)))
		return TH_EIO;
	p->spooled = p->nalerts;
	return 0;
}

/* Reads the alerts a killed run left in @p path into the partition (a torn
 * last record, from a kill mid-write, was never followed by a commit: it is
 * cut off), then opens the spool for appending. */
static int spool_open(struct part *p, const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long good = 0;
	int rc = 0;
	if (f) {
		struct spool_hdr h;
		while (fread(&h, sizeof(h), 1, f) == 1 && h.magic == SPOOL_MAGIC &&
		       h.account_len < SPOOL_FIELD_MAX && h.json_len < SPOOL_FIELD_MAX &&
		       h.avro_len < SPOOL_FIELD_MAX && h.id[TH_ALERT_ID_LEN] == 0) {
			size_t n = (size_t)h.account_len + h.json_len + h.avro_len;
			char *nb = realloc(buf, n + 1);
			if (!nb) {
				rc = TH_ENOMEM;
				break;
			}
			buf = nb;
			if (fread(buf, 1, n, f) != n)
				break;
			if ((rc = alerts_grow(p)))
				break;
			struct abuf *ab = &p->alerts[p->nalerts];
			memset(ab, 0, sizeof(*ab));
			ab->t = h.t;
			ab->depth = h.depth;
			ab->variation = h.variation;
			ab->part = p->idx;
			memcpy(ab->id, h.id, sizeof(ab->id));
			if (!(ab->account = strndup(buf, h.account_len))) {
				rc = TH_ENOMEM;
				break;
			}
			ab->json_off = p->json.len;
			ab->json_len = h.json_len;
			th_put_bytes(&p->json, buf + h.account_len, h.json_len);
			ab->avro_off = p->avro_blob.len;
			ab->avro_len = h.avro_len;
			th_put_bytes(&p->avro_blob, buf + h.account_len + h.json_len, h.avro_len);
			if (p->json.oom || p->avro_blob.oom) {
				free(ab->account);
				rc = TH_ENOMEM;
				break;
			}
			p->nalerts++;
			atomic_fetch_add(&p->nalert_atomic, 1);
			good = ftell(f);
		}
		fclose(f);
		free(buf);
		if (!rc && truncate(path, good) != 0)
			rc = TH_EIO;
	}
	p->spooled = p->nalerts;
	if (!rc && !(p->spool = fopen(path, "ab")))
		rc = TH_EIO;
	if (rc)
		snprintf(errstr, errstr_size, "%.400s: %s", path,
			 rc == TH_EIO ? strerror(errno) : th_strerror(rc));
	return rc;
}

/*
 * Progress within a file. The ledger names a file only once every partition
 * is past its end, and partitions commit on their own (mid-file every --batch
 * events, at each file's end): a run killed in between left events in a
 * store that the next run, reading the file again, learnt a second time
 * (a key's inside/outside counts and API call counts doubled in `inspect`).
 * So each partition keeps, in the same commit, how far into a file it has
 * learnt (`\0scan-file␟<ledger name>`: the offset of the next record to
 * learn, UINT64_MAX once at its end), and skips what it already learnt. The
 * records of files the ledger names are removed at the start and end of a
 * run.
 */
#define PROGRESS_PREFIX "\0scan-file\x1f"
#define PROGRESS_PREFIX_LEN (sizeof(PROGRESS_PREFIX) - 1)

static size_t progress_key(char *k, size_t n, const char *ledger)
{
	size_t ll = strlen(ledger);
	if (PROGRESS_PREFIX_LEN + ll > n)
		return 0;
	memcpy(k, PROGRESS_PREFIX, PROGRESS_PREFIX_LEN);
	memcpy(k + PROGRESS_PREFIX_LEN, ledger, ll);
	return PROGRESS_PREFIX_LEN + ll;
}

static int progress_put(struct part *p, uint64_t next)
{
	char k[4200];
	uint8_t v[8];
	size_t kl;
	/* file_events first: without events of the current file p->cur may be
	 * a file the reading thread has freed */
	if (!p->s->persistent || !p->file_events || !p->cur || !p->cur->ledger ||
	    !(kl = progress_key(k, sizeof(k), p->cur->ledger)))
		return 0;
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t)(next >> (8 * i));
	return th_state_put(p->st, k, kl, v, sizeof(v));
}

/* The first event of a file in this partition: how much of it is learnt. */
static int progress_start(struct part *p)
{
	char k[4200];
	const void *v;
	size_t kl, vl;
	int rc;
	p->seen_idx = p->cur->idx;
	p->skip_below = 0;
	p->file_events = false;
	if (!p->cur->ledger || !(kl = progress_key(k, sizeof(k), p->cur->ledger)))
		return 0;
	rc = th_state_get(p->st, k, kl, &v, &vl);
	if (rc == TH_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (vl == 8)
		for (int i = 0; i < 8; i++)
			p->skip_below |= (uint64_t)((const uint8_t *)v)[i] << (8 * i);
	return 0;
}

static int progress_drop_cb(void *ctx, const void *key, size_t klen, const void *val,
			    size_t vlen);

/* Forget the progress of the files the ledger names, then commit. */
static int progress_drop_done(struct part *p)
{
	int rc = th_state_scan(p->st, PROGRESS_PREFIX, PROGRESS_PREFIX_LEN, progress_drop_cb, p);
	if (!rc)
		rc = th_state_commit(p->st, TH_STATE_NO_OFFSET);
	return rc;
}

static int part_commit(struct part *p)
{
	int rc = spool_write(p);
	if (!rc)
		rc = th_detector_checkpoint(p->det);
	if (!rc)
		rc = th_state_commit(p->st, TH_STATE_NO_OFFSET);
	return rc;
}

static int part_event(struct part *p, const struct th_event *ev, uint64_t offset)
{
	struct th_input_ref ref = {.topic = p->cur ? p->cur->path : "<stdin>", .partition = -1,
				   .offset = (int64_t)offset};
	int rc;
	if (p->s->persistent) {
		if (p->cur && p->cur->idx != p->seen_idx && (rc = progress_start(p)))
			return rc;
		if (offset < p->skip_below)
			return 0; /* learnt by a run that was killed */
		p->file_events = true;
		p->next_off = offset + 1;
	}
	if ((rc = th_detector_process(p->det, ev, &ref))) {
		fprintf(stderr, "trailhound: detector failed at %s byte %" PRIu64 ": %s\n", ref.topic,
			offset, th_strerror(rc));
		return rc;
	}
	/* Coalesced writes: LMDB sees one put per distinct key per batch. */
	if (++p->since_commit >= p->s->batch) {
		p->since_commit = 0;
		if ((rc = progress_put(p, p->next_off)) || (rc = part_commit(p)))
			return rc;
	}
	return 0;
}

/* End of a file: its events are committed before the ledger may name it. */
static int part_file_end(struct part *p, const struct fent *f)
{
	int rc = 0;
	if (p->s->persistent) {
		p->since_commit = 0;
		if (p->cur != f)
			p->file_events = false; /* none of f's events came here */
		rc = progress_put(p, UINT64_MAX);
		p->file_events = false;
		if (!rc)
			rc = part_commit(p);
	}
	/* once files_done passes it the reading thread may free f */
	if (p->cur == f)
		p->cur = NULL;
	if (!rc)
		atomic_store(&p->files_done, f->idx + 1);
	return rc;
}

/* Every string of a th_event, in packing order. */
static const size_t ev_strings[] = {
	offsetof(struct th_event, event_time),
	offsetof(struct th_event, event_id),
	offsetof(struct th_event, event_source),
	offsetof(struct th_event, event_name),
	offsetof(struct th_event, aws_region),
	offsetof(struct th_event, source_ip),
	offsetof(struct th_event, user_agent),
	offsetof(struct th_event, recipient_account_id),
	offsetof(struct th_event, error_code),
	offsetof(struct th_event, error_message),
	offsetof(struct th_event, vpc_endpoint_id),
	offsetof(struct th_event, vpc_endpoint_account_id),
	offsetof(struct th_event, ui.type),
	offsetof(struct th_event, ui.arn),
	offsetof(struct th_event, ui.account_id),
	offsetof(struct th_event, ui.access_key_id),
	offsetof(struct th_event, ui.invoked_by),
	offsetof(struct th_event, ui.principal_id),
	offsetof(struct th_event, ui.session_issuer_arn),
	offsetof(struct th_event, ui.session_issuer_account_id),
	offsetof(struct th_event, ui.creation_date),
	offsetof(struct th_event, req.role_arn),
	offsetof(struct th_event, req.role_session_name),
	offsetof(struct th_event, req.role),
	offsetof(struct th_event, req.function_name),
	offsetof(struct th_event, cred.access_key_id),
	offsetof(struct th_event, cred.expiration),
};

static const char *ev_string(const struct th_event *ev, size_t i)
{
	const char *v;
	memcpy(&v, (const char *)ev + ev_strings[i], sizeof(v));
	return v;
}

/* The event as the partition will see it: the struct, then where each string
 * starts (uint32_t per ev_strings entry, from the struct's start; 0 = NULL),
 * then the strings with their NULs. The detector reads an event's fields as
 * C strings and nothing else (not the raw record), so this is the whole
 * event; the offsets spare the partition a strlen per string over memory
 * another core wrote. */
enum { EV_NSTR = sizeof(ev_strings) / sizeof(ev_strings[0]) };
/* A field added to th_event must be added to ev_strings (a string) or
 * here (a number): an unlisted string would reach the partition pointing
 * into the reading thread's parser arena. */
_Static_assert(sizeof(struct th_event) ==
		       EV_NSTR * sizeof(const char *) + 3 * sizeof(int64_t),
	       "th_event changed: update ev_strings");

static void pack_event(struct th_wbuf *w, const struct th_event *ev)
{
	uint32_t off[EV_NSTR];
	size_t lens[EV_NSTR], total = sizeof(*ev) + sizeof(off);
	for (size_t i = 0; i < EV_NSTR; i++) {
		const char *v = ev_string(ev, i);
		lens[i] = v ? strlen(v) + 1 : 0;
		off[i] = v ? (uint32_t)total : 0;
		total += lens[i];
	}
	/* One room check for the whole event, then plain copies: a call and a
	 * growth check per string showed next to the detector's own work. A
	 * record over 4 GiB cannot get here (the parser's record limit). */
	if (!th_wbuf_reserve(w, total))
		return;
	uint8_t *o = w->p + w->len;
	memcpy(o, ev, sizeof(*ev));
	memcpy(o + sizeof(*ev), off, sizeof(off));
	for (size_t i = 0; i < EV_NSTR; i++)
		if (lens[i])
			memcpy(o + off[i], ev_string(ev, i), lens[i]);
	w->len += total;
}

/* pack_event's inverse; the strings stay in the batch, which outlives the
 * event (the detector keeps no pointer into an event, as with the parser's
 * arena). */
static void unpack_event(const unsigned char *p, struct th_event *ev)
{
	uint32_t off[EV_NSTR];
	memcpy(ev, p, sizeof(*ev));
	memcpy(off, p + sizeof(*ev), sizeof(off));
	for (size_t i = 0; i < EV_NSTR; i++) {
		const char *v = off[i] ? (const char *)p + off[i] : NULL;
		memcpy((char *)ev + ev_strings[i], &v, sizeof(v));
	}
}

static void *part_main(void *arg)
{
	struct part *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->qhead && !p->eof)
			pthread_cond_wait(&p->cv, &p->mu);
		struct batch *b = p->qhead;
		if (b) {
			p->qhead = b->next;
			if (!p->qhead)
				p->qtail = NULL;
			p->qlen--;
			pthread_cond_broadcast(&p->cv);
		}
		pthread_mutex_unlock(&p->mu);
		if (!b)
			break;
		size_t at = 0;
		while (at < b->w.len && !atomic_load(&p->fatal)) {
			struct item it;
			memcpy(&it, b->w.p + at, sizeof(it));
			at += sizeof(it);
			int rc;
			if (it.len == ITEM_FILE_END) {
				rc = part_file_end(p, it.f);
			} else {
				struct th_event ev;
				p->cur = it.f;
				unpack_event(b->w.p + at, &ev);
				rc = part_event(p, &ev, it.offset);
				at += ((size_t)it.len + 7) & ~(size_t)7;
			}
			if (rc)
				atomic_store(&p->fatal, rc);
		}
		/* Back to the reading thread for reuse: a fresh 1 MiB buffer per
		 * batch, grown by doubling, cost reallocs and page faults. */
		pthread_mutex_lock(&p->mu);
		if (p->nspare < QUEUE_MAX) {
			th_wbuf_reset(&b->w);
			b->next = p->spare;
			p->spare = b;
			p->nspare++;
			b = NULL;
		}
		pthread_mutex_unlock(&p->mu);
		if (b) {
			th_wbuf_free(&b->w);
			free(b);
		}
	}
	return NULL;
}

static int part_push(struct part *p)
{
	struct batch *b = p->filling;
	if (!b)
		return 0;
	p->filling = NULL;
	pthread_mutex_lock(&p->mu);
	while (p->qlen >= QUEUE_MAX)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->qtail)
		p->qtail->next = b;
	else
		p->qhead = b;
	p->qtail = b;
	p->qlen++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

/* Queue ev (NULL: the end of file f) for partition p. */
static int part_enqueue(struct part *p, const struct th_event *ev, uint64_t offset,
			struct fent *f)
{
	static const char zeros[8];
	if (!p->filling) {
		pthread_mutex_lock(&p->mu);
		if ((p->filling = p->spare)) {
			p->spare = p->filling->next;
			p->nspare--;
			p->filling->next = NULL;
		}
		pthread_mutex_unlock(&p->mu);
		if (!p->filling && !(p->filling = calloc(1, sizeof(*p->filling))))
			return TH_ENOMEM;
		/* sized once for a whole batch (it is pushed past BATCH_BYTES) */
		if (!th_wbuf_reserve(&p->filling->w, BATCH_BYTES + 4096))
			return TH_ENOMEM;
	}
	struct th_wbuf *w = &p->filling->w;
	struct item it = {ITEM_FILE_END, 0, offset, f};
	size_t at = w->len;
	th_put_bytes(w, &it, sizeof(it));
	if (ev) {
		pack_event(w, ev);
		size_t len = w->len - at - sizeof(it);
		if (w->oom || len >= ITEM_FILE_END) {
			w->len = at; /* no half-written item is ever read */
			return w->oom ? TH_ENOMEM : TH_ETOOBIG;
		}
		it.len = (uint32_t)len;
		memcpy(w->p + at, &it, sizeof(it));
		th_put_bytes(w, zeros, (8 - (len & 7)) & 7);
	}
	if (w->oom)
		return TH_ENOMEM;
	/* A file's end rides in the batch like a record: an archive holds a few
	 * events per file, and a hand-over per file would cost more than them. */
	if (w->len >= BATCH_BYTES)
		return part_push(p);
	return 0;
}

static int first_fatal(struct scan *s)
{
	for (int i = 0; i < s->nparts; i++) {
		int rc = atomic_load(&s->parts[i].fatal);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the reading thread ---- */

static int on_event(void *ctx, const struct th_event *ev, const char *raw, size_t raw_len,
		    uint64_t offset)
{
	struct scan *s = ctx;
	int rc;
	(void)raw, (void)raw_len;
	s->read++;
	s->parsed++;
	if (s->parse_only)
		return 0;
	struct part *p = &s->parts[partition_of(ev, s->nparts)];
	if (!s->threaded) {
		p->cur = s->curf;
		rc = part_event(p, ev, offset);
	} else {
		rc = part_enqueue(p, ev, offset, s->curf);
		if (!rc)
			rc = first_fatal(s);
	}
	if (rc) {
		s->fatal = rc;
		return rc;
	}
	if (s->progress && (s->read & 4095) == 0)
		show_progress(s, false);
	return 0;
}

static void on_reject(void *ctx, enum th_reject why, const char *detail, const char *raw,
		      size_t raw_len, uint64_t offset)
{
	struct scan *s = ctx;
	s->read++;
	s->rejected_by[why < TH_REJECT__COUNT ? why : TH_REJECT_MALFORMED_JSON]++;
	if (!s->quiet_rejects)
		fprintf(stderr, "%s: byte %" PRIu64 ": rejected (%s): %s\n", s->input_name, offset,
			th_reject_name(why), detail);
	if (s->dead) {
		/* Dead letter: the original bytes and why, one JSON object per line. */
		struct th_wbuf w = {0};
		char num[32];
		TH_PUT_LIT(&w, "{\"input\":");
		th_json_put_string(&w, s->input_name);
		snprintf(num, sizeof(num), ",\"offset\":%" PRIu64, offset);
		th_put_bytes(&w, num, strlen(num));
		TH_PUT_LIT(&w, ",\"reason\":");
		th_json_put_string(&w, th_reject_name(why));
		TH_PUT_LIT(&w, ",\"detail\":");
		th_json_put_string(&w, detail);
		/* base64: a rejected record may not be UTF-8 or even text */
		TH_PUT_LIT(&w, ",\"raw_base64\":\"");
		unsigned char *b64 = malloc(4 * ((raw_len + 2) / 3) + 1);
		if (b64) {
			int n = EVP_EncodeBlock(b64, (const unsigned char *)raw, (int)raw_len);
			th_put_bytes(&w, b64, n > 0 ? (size_t)n : 0);
			free(b64);
		}
		TH_PUT_LIT(&w, "\"}\n");
		if (w.oom || fwrite(w.p, 1, w.len, s->dead) != w.len) {
			/* Report once; the scan goes on (its alerts are still good)
			 * and exits 5 because the dead letters are incomplete. */
			s->dead_err = w.oom ? ENOMEM : errno ? errno : EIO;
			fprintf(stderr, "trailhound scan: dead letter %s: %s; rejected records are "
					"no longer written\n",
				s->dead_path, strerror(s->dead_err));
			fclose(s->dead);
			s->dead = NULL;
		}
		th_wbuf_free(&w);
	}
}

static void on_skip(void *ctx, const char *path, enum th_archive_skip why, const char *detail)
{
	struct scan *s = ctx;
	if (s->counting)
		return;
	s->skipped_by[why]++;
	/* Digest files, dot files and other files are expected in an archive:
	 * counted only. What the user may want to fix is said. */
	if (why == TH_SKIP_SYMLINK_LOOP || why == TH_SKIP_UNREADABLE ||
	    why == TH_SKIP_NOT_REGULAR)
		fprintf(stderr, "trailhound scan: skipped %s (%s%s%s)\n", path,
			th_archive_skip_name(why), detail && *detail ? ": " : "",
			detail ? detail : "");
}

/* ---- the resume ledger (DIR/files.done) ---- */

static bool ledger_has(struct scan *s, const char *key)
{
	struct ledger_ent *e;
	HASH_FIND_STR(s->done, key, e);
	return e != NULL;
}

static int progress_drop_cb(void *ctx, const void *key, size_t klen, const void *val,
			    size_t vlen)
{
	struct part *p = ctx;
	char name[4200];
	(void)val, (void)vlen;
	if (klen - PROGRESS_PREFIX_LEN >= sizeof(name))
		return 0;
	memcpy(name, (const char *)key + PROGRESS_PREFIX_LEN, klen - PROGRESS_PREFIX_LEN);
	name[klen - PROGRESS_PREFIX_LEN] = 0;
	if (ledger_has(p->s, name))
		return th_state_del(p->st, key, klen) ? 1 : 0;
	return 0;
}

static int ledger_add_mem(struct scan *s, const char *key)
{
	size_t n = strlen(key) + 1;
	struct ledger_ent *e;
	if (ledger_has(s, key))
		return 0;
	if (!(e = calloc(1, sizeof(*e) + n)))
		return TH_ENOMEM;
	memcpy(e->key, key, n);
	HASH_ADD_STR(s->done, key, e);
	return 0;
}

static int ledger_open(struct scan *s, const char *dir, char *errstr, size_t errstr_size)
{
	char path[4096], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	snprintf(path, sizeof(path), "%s/files.done", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		while ((n = getline(&line, &cap, f)) > 0) {
			/* a torn last line (crash mid-write) ends without '\n': not done */
			if (line[n - 1] != '\n')
				break;
			line[n - 1] = 0;
			if ((rc = ledger_add_mem(s, line)))
				break;
		}
		free(line);
		fclose(f);
		if (rc)
			return rc;
	}
	if (!(s->ledger = fopen(path, "a"))) {
		snprintf(errstr, errstr_size, "%.400s/files.done: %s", dir, strerror(errno));
		return TH_EIO;
	}
	return 0;
}

static void ledger_free(struct scan *s)
{
	struct ledger_ent *e, *t;
	HASH_ITER(hh, s->done, e, t)
	{
		HASH_DEL(s->done, e);
		free(e);
	}
}

/* Name in the ledger (and free) every file that all partitions are past. */
static int fents_retire(struct scan *s)
{
	uint64_t upto = UINT64_MAX;
	int rc = 0;
	for (int i = 0; i < s->nparts; i++) {
		uint64_t d = atomic_load(&s->parts[i].files_done);
		if (d < upto)
			upto = d;
	}
	if (s->parse_only)
		upto = s->nfents;
	for (; s->fents_freed < upto && s->fents_freed < s->nfents; s->fents_freed++) {
		struct fent *f = s->fents[s->fents_freed];
		/* --parse-only detected nothing: its files are not done */
		if (f && f->ledger && !f->failed && s->ledger && !s->parse_only && !rc &&
		    (fprintf(s->ledger, "%s\n", f->ledger) < 0 || fflush(s->ledger) ||
		     ledger_add_mem(s, f->ledger)))
			rc = TH_EIO;
		if (f) {
			free(f->path);
			free(f->ledger);
			free(f);
		}
		s->fents[s->fents_freed] = NULL;
	}
	return rc;
}

/* ---- alerts out, in one order for any --jobs ---- */

static int cmp_abuf_ctx_less(const struct abuf *x, const struct abuf *y, struct scan *s)
{
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	const struct part *px = &s->parts[x->part], *py = &s->parts[y->part];
	size_t n = x->json_len < y->json_len ? x->json_len : y->json_len;
	c = memcmp(px->json.p + x->json_off, py->json.p + y->json_off, n);
	if (c)
		return c;
	return x->json_len < y->json_len ? -1 : x->json_len > y->json_len;
}

static struct scan *sort_scan; /* qsort has no context argument in C11 */

static int cmp_abuf(const void *x, const void *y)
{
	return cmp_abuf_ctx_less(x, y, sort_scan);
}

static int cmp_str_p(const void *x, const void *y)
{
	return strcmp(((const struct abuf *)x)->account, ((const struct abuf *)y)->account);
}

struct merged {
	struct abuf *v;
	size_t n;
};

static int merge_alerts(struct scan *s, struct merged *m)
{
	size_t n = 0;
	for (int i = 0; i < s->nparts; i++)
		n += s->parts[i].nalerts;
	m->n = 0;
	if (!(m->v = calloc(n + 1, sizeof(*m->v))))
		return TH_ENOMEM;
	for (int i = 0; i < s->nparts; i++) {
		if (s->parts[i].nalerts) /* a partition without alerts has no array */
			memcpy(m->v + m->n, s->parts[i].alerts,
			       s->parts[i].nalerts * sizeof(*m->v));
		m->n += s->parts[i].nalerts;
	}
	sort_scan = s;
	qsort(m->v, m->n, sizeof(*m->v), cmp_abuf);
	/* A run killed between its spool write and its commit raises the
	 * spooled alerts again: the same bytes, written once. */
	size_t k = 0, json_only = 0;
	for (size_t i = 0; i < m->n; i++)
		if (!k || cmp_abuf_ctx_less(&m->v[k - 1], &m->v[i], s) != 0)
			m->v[k++] = m->v[i];
	m->n = k;
	/* A spooled alert of a killed run without --avro-out has only its
	 * JSON (the Avro is encoded when the alert is raised): said, so the
	 * two outputs never differ unnoticed. */
	for (size_t i = 0; s->avro_out && i < m->n; i++)
		json_only += !m->v[i].avro_len;
	if (json_only)
		fprintf(stderr,
			"trailhound scan: %zu alert(s) in the JSON output only: raised by an "
			"interrupted run without --avro-out, delivered now from its spool\n",
			json_only);
	for (size_t i = 0; i < m->n; i++) {
		const struct abuf *ab = &m->v[i];
		const struct part *p = &s->parts[ab->part];
		if (!s->out_err && fwrite(p->json.p + ab->json_off, 1, ab->json_len, stdout) !=
					   ab->json_len)
			s->out_err = errno ? errno : EIO;
		/* None (said above): with no Avro at all the blob has no buffer,
		 * and fwrite of NULL is undefined even for 0 bytes. */
		if (s->avro_out && ab->avro_len &&
		    fwrite(p->avro_blob.p + ab->avro_off, 1, ab->avro_len, s->avro_out) !=
			    ab->avro_len)
			return TH_EIO;
	}
	s->alerts = m->n;
	return 0;
}

static void sum_stats(struct scan *s, struct th_detect_stats *ds)
{
	memset(ds, 0, sizeof(*ds));
	for (int i = 0; i < s->nparts; i++) {
		struct th_detect_stats one;
		if (!s->parts[i].det)
			continue;
		th_detector_get_stats(s->parts[i].det, &one);
		uint64_t *a = (uint64_t *)ds, *b = (uint64_t *)&one;
		/* every field is a uint64_t counter: sum them all */
		for (size_t k = 0; k < sizeof(*ds) / sizeof(uint64_t); k++)
			a[k] += b[k];
	}
}

/* Per-account counts of the merged alerts: sorted by account, reused by
 * both summaries. Calls @p fn once per account. */
static void by_account(const struct merged *m, void (*fn)(void *, const char *, uint64_t),
		       void *ctx)
{
	if (!m->n)
		return;
	struct abuf *v = malloc(m->n * sizeof(*v));
	if (!v)
		return;
	memcpy(v, m->v, m->n * sizeof(*v));
	qsort(v, m->n, sizeof(*v), cmp_str_p);
	for (size_t i = 0, j; i < m->n; i = j) {
		for (j = i; j < m->n && strcmp(v[j].account, v[i].account) == 0; j++)
			;
		fn(ctx, v[i].account, j - i);
	}
	free(v);
}

static void scan_usage(FILE *out)
{
	fprintf(out,
		"Usage: trailhound scan [options] [FILE|DIR...|-]\n"
		"\n"
		"Runs the detector over CloudTrail files: JSON lines, pretty-printed JSON,\n"
		"{\"Records\":[...]} log files, arrays, EventBridge envelopes; gzip or not.\n"
		"Directories are walked (an S3 archive: AWSLogs/...), and all files are\n"
		"read in CloudTrail delivery order, by the timestamp in their S3 names\n"
		"(else their first eventTime). With --state, files already read are\n"
		"skipped: a second run reads only new files.\n"
		"Alerts go to stdout as JSON lines, ordered by eventTime then alert ID,\n"
		"the same for any --jobs; a summary goes to stderr.\n"
		"\n"
		"Options:\n"
		"  --state DIR          keep the detector state in DIR (default: a temporary\n"
		"                       directory removed at exit)\n"
		"  --asn-db FILE        ASN database (.mmdb, GeoLite2-ASN schema)  [$TH_ASN_DB]\n"
		"  --aws-ranges FILE    AWS ip-ranges.json; without it AWS addresses are\n"
		"                       recognised by Amazon's ASNs          [$TH_AWS_RANGES]\n"
		"  -c, --config FILE    detection settings from a config file (see --help-config)\n"
		"  --set KEY=VALUE      one setting (same keys as the config file)\n"
		"  --help-config        list the settings with their defaults\n"
		"  --dead-letter FILE   write rejected records (raw bytes + reason) as JSON lines\n"
		"  --avro-out FILE      also write each alert as a Confluent-framed Avro message,\n"
		"                       each prefixed by its 4-byte big-endian length; the\n"
		"                       schema id is schema_id, or registered with\n"
		"                       schema_registry_url, or 1\n"
		"  --record-max BYTES   per-record size limit, 1024..104857600 (default: the\n"
		"                       record_max setting, 1048576)\n"
		"  --batch N            events per state commit (default 50000)\n"
		"  --quiet-rejects      do not print each rejected record\n"
		"  --parse-only         parse and count, no detection (the benchmark baseline)\n"
		"  --summary-json FILE  also write every counter as one JSON object to FILE\n"
		"  -j, --jobs N         N detectors, one per account partition, each in its\n"
		"                       own thread (default: the number of cores; an existing\n"
		"                       --state store keeps the count it was made with)\n"
		"  --no-progress        no progress line even on a terminal\n"
		"  -h, --help           this text\n"
		"\n"
		"Exit codes: 0 no alerts, 1 alerts raised, 2 usage error, 3 an input could not be\n"
		"read, 4 configuration/reference data error, 5 runtime failure (state store).\n");
}

/* Outputs (dead letters, Avro, summary) are opened for writing, which
 * truncates: refuse one that names an input before anything is opened. */
static int refuse_input_as_output(const char *what, const char *out, char **inputs, int ninputs)
{
	struct stat so, si;
	if (!out || stat(out, &so) != 0 || !S_ISREG(so.st_mode))
		return 0;
	for (int i = 0; i < ninputs; i++) {
		bool same = strcmp(inputs[i], "-") == 0
				    ? fstat(STDIN_FILENO, &si) == 0
				    : stat(inputs[i], &si) == 0;
		if (same && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
			fprintf(stderr,
				"trailhound scan: %s %s is also an input; refusing to overwrite it\n",
				what, out);
			return TH_EINVAL;
		}
	}
	return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The --avro-out encoder and its schema id: configured, registered, or 1. */
static int avro_setup(struct th_avro_alert **aap, int32_t *idp, const struct th_config *cf,
		      char *errstr, size_t errstr_size)
{
	int32_t id = (int32_t)cf->schema_id;
	int rc;

	if ((rc = th_avro_alert_new(aap, th_config_alert_schema(cf), id, errstr, errstr_size)))
		return rc;
	if (!id && cf->schema_registry_url && *cf->schema_registry_url) {
		char subject[512];
		/* Confluent's default TopicNameStrategy: what consumers look up. */
		snprintf(subject, sizeof(subject), "%s-value",
			 cf->output_topic ? cf->output_topic : "");
		if ((rc = th_registry_register(cf->schema_registry_url, subject,
					     th_avro_alert_schema_json(*aap), &id, errstr,
					     errstr_size)))
			return rc;
		fprintf(stderr, "trailhound scan: alert schema registered as %s, id %" PRId32 "\n",
			subject, id);
	} else if (!id) {
		id = 1;
		fprintf(stderr, "trailhound scan: no schema_id or schema_registry_url set; "
				"--avro-out messages carry schema id 1\n");
	}
	th_avro_alert_set_schema_id(*aap, id);
	*idp = id;
	return 0;
}

struct jctx {
	struct th_wbuf *w;
	bool first;
};

static void json_account(void *ctx, const char *acct, uint64_t n)
{
	struct jctx *j = ctx;
	char num[32];
	if (!j->first)
		th_put_u8(j->w, ',');
	j->first = false;
	th_json_put_string(j->w, acct);
	int k = snprintf(num, sizeof(num), ":%" PRIu64, n);
	th_put_bytes(j->w, num, (size_t)k);
}

static void text_account(void *ctx, const char *acct, uint64_t n)
{
	(void)ctx;
	fprintf(stderr, "    account %-14s %" PRIu64 "\n", *acct ? acct : "(none)", n);
}

/* --summary-json: every counter as one JSON object, for scripts and tests that
 * must not parse the text summary. Keys are stable names; every reject and
 * skip reason is listed, zeros included, so a consumer can tell 0 from "not
 * counted". */
static int write_summary_json(struct scan *s, const struct th_detect_stats *dsp,
			      const struct merged *m, const char *path)
{
	struct th_detect_stats ds = *dsp;
	struct th_wbuf w = {0};
	uint64_t rejected = 0;
	char num[64];
	FILE *f = NULL;
	int rc = 0, err = 0;

	for (int i = 0; i < TH_REJECT__COUNT; i++)
		rejected += s->rejected_by[i];
#define PUT_NUM(fmt, v)                                                                            \
	do {                                                                                       \
		int n_ = snprintf(num, sizeof(num), fmt, v);                                       \
		th_put_bytes(&w, num, (size_t)n_);                                                 \
	} while (0)
	TH_PUT_LIT(&w, "{\"records\":{\"read\":");
	PUT_NUM("%" PRIu64, s->read);
	TH_PUT_LIT(&w, ",\"parsed\":");
	PUT_NUM("%" PRIu64, s->parsed);
	TH_PUT_LIT(&w, ",\"rejected\":");
	PUT_NUM("%" PRIu64, rejected);
	TH_PUT_LIT(&w, ",\"rejected_by\":{");
	for (int i = 1; i < TH_REJECT__COUNT; i++) {
		if (i > 1)
			th_put_u8(&w, ',');
		th_json_put_string(&w, th_reject_name(i));
		PUT_NUM(":%" PRIu64, s->rejected_by[i]);
	}
	TH_PUT_LIT(&w, "}},\"files\":{\"read\":");
	PUT_NUM("%" PRIu64, s->files_read);
	TH_PUT_LIT(&w, ",\"failed\":");
	PUT_NUM("%" PRIu64, s->inputs_failed);
	TH_PUT_LIT(&w, ",\"skipped_by\":{");
	for (int i = 0; i < TH_SKIP__COUNT; i++) {
		if (i)
			th_put_u8(&w, ',');
		th_json_put_string(&w, th_archive_skip_name(i));
		PUT_NUM(":%" PRIu64, s->skipped_by[i]);
	}
	TH_PUT_LIT(&w, "}},\"jobs\":");
	PUT_NUM("%d", s->nparts);
	TH_PUT_LIT(&w, ",\"alerts\":{\"total\":");
	PUT_NUM("%" PRIu64, s->alerts);
	TH_PUT_LIT(&w, ",\"by_variation\":{");
	for (size_t i = 0; i < th_variations_count; i++) {
		int v = th_variations[i].id;
		int n = snprintf(num, sizeof(num), "%s\"%d\":%" PRIu64, i ? "," : "", v,
				 ds.alerts[v]);
		th_put_bytes(&w, num, (size_t)n);
	}
	TH_PUT_LIT(&w, "},\"by_account\":{");
	struct jctx jc = {&w, true};
	by_account(m, json_account, &jc);
	TH_PUT_LIT(&w, "}},\"detector\":{");
	const struct {
		const char *name;
		uint64_t v;
	} det[] = {
		{"events", ds.events},
		{"candidates", ds.candidates},
		{"inside_uses", ds.inside_uses},
		{"remote_uses", ds.remote_uses},
		{"excluded", ds.excluded},
		{"source_unrecognised", ds.source_unrecognised},
		{"held", ds.held},
		{"held_resolved", ds.held_resolved},
		{"held_expired", ds.held_expired},
		{"upgrades", ds.upgrades},
		{"suppressed_activation", ds.suppressed_activation},
		{"suppressed_dedup", ds.suppressed_dedup},
		{"pruned", ds.pruned},
	};
	for (size_t i = 0; i < sizeof(det) / sizeof(det[0]); i++) {
		if (i)
			th_put_u8(&w, ',');
		th_json_put_string(&w, det[i].name);
		PUT_NUM(":%" PRIu64, det[i].v);
	}
	TH_PUT_LIT(&w, "}}\n");
#undef PUT_NUM
	if (w.oom) {
		rc = TH_ENOMEM;
		goto cleanup;
	}
	if (!(f = fopen(path, "w")) || fwrite(w.p, 1, w.len, f) != w.len) {
		err = errno;
		rc = TH_EIO;
		goto cleanup;
	}
cleanup:
	if (f && fclose(f) && !rc) {
		err = errno;
		rc = TH_EIO;
	}
	if (rc)
		fprintf(stderr, "trailhound scan: %s: %s\n", path,
			err ? strerror(err) : th_strerror(rc));
	th_wbuf_free(&w);
	return rc;
}

static void print_summary(struct scan *s, const struct th_detect_stats *dsp,
			  const struct merged *m, double secs)
{
	const struct th_detect_stats ds = *dsp;
	uint64_t rejected = 0, skipped = 0;
	for (int i = 0; i < TH_REJECT__COUNT; i++)
		rejected += s->rejected_by[i];
	for (int i = 0; i < TH_SKIP__COUNT; i++)
		skipped += s->skipped_by[i];
	fprintf(stderr, "trailhound scan: %" PRIu64 " records read, %" PRIu64 " parsed, %" PRIu64
			" rejected\n",
		s->read, s->parsed, rejected);
	fprintf(stderr, "  files read %" PRIu64 ", skipped %" PRIu64 "\n", s->files_read, skipped);
	for (int i = 0; i < TH_SKIP__COUNT; i++)
		if (s->skipped_by[i])
			fprintf(stderr, "    skipped %-16s %" PRIu64 "\n", th_archive_skip_name(i),
				s->skipped_by[i]);
	if (s->inputs_failed)
		fprintf(stderr, "  inputs not read %" PRIu64 "\n", s->inputs_failed);
	for (int i = 1; i < TH_REJECT__COUNT; i++)
		if (s->rejected_by[i])
			fprintf(stderr, "  rejected %-16s %" PRIu64 "\n", th_reject_name(i),
				s->rejected_by[i]);
	fprintf(stderr, "  alerts %" PRIu64 "\n", s->alerts);
	for (size_t i = 0; i < th_variations_count; i++) {
		const struct th_variation *v = &th_variations[i];
		if (ds.alerts[v->id])
			fprintf(stderr, "    %d %-50s %-13s %" PRIu64 "\n", v->id, v->name, v->severity,
				ds.alerts[v->id]);
	}
	by_account(m, text_account, NULL);
	fprintf(stderr,
		"  candidates %" PRIu64 " (inside %" PRIu64 ", remote %" PRIu64 ", excluded %" PRIu64
		"), held %" PRIu64 " (resolved %" PRIu64 ", expired %" PRIu64 "), upgrades %" PRIu64
		"\n",
		ds.candidates, ds.inside_uses, ds.remote_uses, ds.excluded, ds.held, ds.held_resolved,
		ds.held_expired, ds.upgrades);
	fprintf(stderr, "  source unrecognised %" PRIu64 "\n", ds.source_unrecognised);
	fprintf(stderr,
		"  suppressed: activation %" PRIu64 ", dedup %" PRIu64 "; pruned %" PRIu64 "\n",
		ds.suppressed_activation, ds.suppressed_dedup, ds.pruned);
	fprintf(stderr, "  %.2f s, %.0f records/s, %d job%s\n", secs,
		(double)s->read / (secs + 1e-9), s->nparts, s->nparts == 1 ? "" : "s");
}

/* The partition count a store was made with: DIR/partitions, else 1 for a
 * store made before --jobs (its data sits in DIR itself), else 0 (new). */
static int store_partitions(const char *dir)
{
	char path[4096];
	int n = 0;
	snprintf(path, sizeof(path), "%s/partitions", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%d", &n) != 1 || n < 1 || n > TH_SCAN_MAX_JOBS)
			n = -1;
		fclose(f);
		return n;
	}
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	return access(path, F_OK) == 0 ? 1 : 0;
}

static int read_one(struct scan *s, const struct th_archive_file *af, const struct th_sink *sink,
		    char *errstr, size_t errstr_size)
{
	struct fent *f = NULL;
	bool bad = false;
	int rc;
	if (s->ledger && !af->stream && ledger_has(s, af->ledger)) {
		s->skipped_by[TH_SKIP_DONE]++;
		return 0;
	}
	s->input_name = strcmp(af->path, "-") == 0 ? "<stdin>" : af->path;
	if ((rc = th_input_open(&s->in, af->path, 0, errstr, errstr_size))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		if (af->explicit_arg) {
			s->inputs_failed++;
			return TH_EIO;
		}
		/* found by walking, gone or unreadable since: reported, skipped */
		s->skipped_by[TH_SKIP_UNREADABLE]++;
		return 0;
	}
	if (s->nfents == s->capfents) {
		size_t nc = s->capfents ? s->capfents * 2 : 256;
		struct fent **p = realloc(s->fents, nc * sizeof(*p));
		if (!p)
			goto oom;
		s->fents = p;
		s->capfents = nc;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(s->input_name)))
		goto oom;
	/* stdin and pipes cannot be recognised again: never in the ledger */
	if (!af->stream && !(f->ledger = strdup(af->ledger)))
		goto oom;
	f->idx = s->nfents;
	s->fents[s->nfents++] = f;
	s->curf = f;
	/* no record of a log file is later than its delivery */
	th_parser_set_delivered(s->parser, th_archive_delivered(af->path));
	rc = th_input_run(s->in, s->parser, sink);
	if (s->progress)
		show_progress(s, false);
	s->bytes_done += af->size;
	th_input_close(s->in);
	s->in = NULL;
	s->files_read++;
	if (s->fatal)
		return s->fatal;
	if (rc) {
		fprintf(stderr, "trailhound scan: %s: read error (%s)\n", s->input_name,
			th_strerror(rc));
		if (af->explicit_arg)
			s->inputs_failed++, bad = true;
		else
			s->skipped_by[TH_SKIP_UNREADABLE]++;
		/* what was read is kept; the file is not named done (a flag:
		 * partitions may still read f->ledger) */
		f->failed = true;
	}
	/* end of file: every partition commits, then the ledger may name it */
	for (int i = 0; i < s->nparts && !s->parse_only; i++) {
		struct part *p = &s->parts[i];
		int frc = s->threaded ? part_enqueue(p, NULL, 0, f) : part_file_end(p, f);
		if (frc) {
			s->fatal = frc;
			return frc;
		}
	}
	if ((rc = fents_retire(s))) {
		fprintf(stderr, "trailhound scan: writing files.done: %s\n", strerror(errno));
		s->fatal = rc;
		return rc;
	}
	return bad ? TH_EIO : 0;
oom:
	if (f) {
		free(f->path);
		free(f);
	}
	th_input_close(s->in);
	s->in = NULL;
	return TH_ENOMEM;
}

static int ncores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > TH_SCAN_MAX_JOBS ? TH_SCAN_MAX_JOBS : (int)n;
}

int th_cmd_scan(int argc, char **argv)
{
	enum { O_STATE = 256, O_ASN, O_RANGES, O_DEAD, O_RECMAX, O_BATCH, O_QUIET, O_NOPROG,
	       O_SET, O_HELPCONF, O_AVRO, O_PARSEONLY, O_SUMMARY, O_JOBS };
	static const struct option opts[] = {
		{"state", required_argument, NULL, O_STATE},
		{"asn-db", required_argument, NULL, O_ASN},
		{"aws-ranges", required_argument, NULL, O_RANGES},
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, O_SET},
		{"help-config", no_argument, NULL, O_HELPCONF},
		{"dead-letter", required_argument, NULL, O_DEAD},
		{"avro-out", required_argument, NULL, O_AVRO},
		{"record-max", required_argument, NULL, O_RECMAX},
		{"batch", required_argument, NULL, O_BATCH},
		{"quiet-rejects", no_argument, NULL, O_QUIET},
		{"no-progress", no_argument, NULL, O_NOPROG},
		{"parse-only", no_argument, NULL, O_PARSEONLY},
		{"summary-json", required_argument, NULL, O_SUMMARY},
		{"jobs", required_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* 50,000 events per commit: LMDB's commit (a B-tree write of every
	 * changed key) was a tenth of scan's CPU at 5,000; the dirty set it
	 * holds stays small (one encoded value per changed key). */
	struct scan s = {.batch = 50000};
	struct th_config cf;
	struct th_enrich *en = NULL;
	struct th_archive *ar = NULL;
	struct merged m = {0};
	struct th_detect_stats ds;
	char errstr[512], tmpdir[256] = "", pdir[4096];
	const char *state_dir = NULL, *dead_path = NULL, *avro_path = NULL, *summary_path = NULL;
	uint64_t n, jobs = 0;
	int32_t schema_id = 0;
	bool no_progress = false;
	int ret = TH_EXIT_OK, rc = 0, c;

	th_config_init(&cf);
	optind = 1;
	while ((c = getopt_long(argc, argv, "hc:j:", opts, NULL)) != -1) {
		switch (c) {
		case O_STATE: state_dir = optarg; break;
		case O_ASN: rc = th_config_set(&cf, "asn_db", optarg, errstr, sizeof(errstr)); break;
		case O_RANGES:
			rc = th_config_set(&cf, "aws_ranges", optarg, errstr, sizeof(errstr));
			break;
		case 'c': rc = th_config_load(&cf, optarg, errstr, sizeof(errstr)); break;
		case O_SET: rc = th_config_set_kv(&cf, optarg, errstr, sizeof(errstr)); break;
		case O_HELPCONF: th_config_help(stdout); goto out;
		case O_DEAD: dead_path = s.dead_path = optarg; break;
		case O_AVRO: avro_path = optarg; break;
		case O_RECMAX:
			/* the bounds of the record_max setting, which this overrides */
			if (th_cmd_parse_count("scan", "--record-max", optarg, 1024, 104857600, &n)) {
				ret = TH_EXIT_USAGE;
				goto out;
			}
			cf.record_max = (long)n;
			break;
		case O_BATCH:
			if (th_cmd_parse_count("scan", "--batch", optarg, 1, 100000000, &s.batch)) {
				ret = TH_EXIT_USAGE;
				goto out;
			}
			break;
		case 'j':
			if (th_cmd_parse_count("scan", "--jobs", optarg, 1, TH_SCAN_MAX_JOBS, &jobs)) {
				ret = TH_EXIT_USAGE;
				goto out;
			}
			break;
		case O_QUIET: s.quiet_rejects = true; break;
		case O_NOPROG: no_progress = true; break;
		case O_PARSEONLY: s.parse_only = true; break;
		case O_SUMMARY: summary_path = optarg; break;
		case 'h': scan_usage(stdout); goto out;
		default: scan_usage(stderr); ret = TH_EXIT_USAGE; goto out;
		}
		if (rc) {
			fprintf(stderr, "trailhound scan: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
	}
	/* log_level / log_format from -c or --set, as `run` honours them */
	if (th_log_configure(cf.log_level, cf.log_format, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	if (refuse_input_as_output("--dead-letter", dead_path, argv + optind, argc - optind) ||
	    refuse_input_as_output("--avro-out", avro_path, argv + optind, argc - optind) ||
	    refuse_input_as_output("--summary-json", summary_path, argv + optind, argc - optind)) {
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (state_dir) {
		/* A store keeps the partition count it was made with: the same
		 * account must find its state in the same partition next time. A
		 * new store without --jobs gets one partition per core, like a
		 * scan without --state; `trailhound inspect` reads every
		 * partition below DIR. */
		int have = store_partitions(state_dir);
		if (have < 0) {
			fprintf(stderr, "trailhound scan: %s/partitions is not a partition count\n",
				state_dir);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
		if (have && jobs && (int)jobs != have) {
			fprintf(stderr,
				"trailhound scan: the store in %s was made with --jobs %d; scan it "
				"with --jobs %d (or start a new --state)\n",
				state_dir, have, have);
			ret = TH_EXIT_USAGE;
			goto out;
		}
		s.nparts = have ? have : jobs ? (int)jobs : ncores();
		s.persistent = true;
	} else {
		s.nparts = jobs ? (int)jobs : ncores();
	}
	if (th_config_open_enrich(&cf, &en, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	if (!state_dir) {
		const char *tmp = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/trailhound-scan-XXXXXX", tmp ? tmp : "/tmp");
		if (!mkdtemp(tmpdir)) {
			fprintf(stderr, "trailhound scan: mkdtemp: %s\n", strerror(errno));
			ret = TH_EXIT_RUNTIME;
			goto out;
		}
		state_dir = tmpdir;
	} else if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "trailhound scan: %s: %s\n", state_dir, strerror(errno));
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	if (s.persistent && s.nparts > 1) {
		snprintf(pdir, sizeof(pdir), "%s/partitions", state_dir);
		FILE *pf = fopen(pdir, "w");
		if (!pf || fprintf(pf, "%d\n", s.nparts) < 0 || fclose(pf)) {
			fprintf(stderr, "trailhound scan: %s: %s\n", pdir, strerror(errno));
			ret = TH_EXIT_RUNTIME;
			goto out;
		}
	}
	if (!(s.parts = calloc((size_t)s.nparts, sizeof(*s.parts)))) {
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	if (avro_path && avro_setup(&s.parts[0].avro, &schema_id, &cf, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_CONFIG;
		goto out;
	}
	for (int i = 0; i < s.nparts; i++) {
		struct part *p = &s.parts[i];
		const char *dir = state_dir;
		p->idx = i;
		p->s = &s;
		p->seen_idx = UINT64_MAX;
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->cv, NULL);
		if (s.nparts > 1) {
			snprintf(pdir, sizeof(pdir), "%s/p%d", state_dir, i);
			if (mkdir(pdir, 0700) != 0 && errno != EEXIST) {
				fprintf(stderr, "trailhound scan: %s: %s\n", pdir, strerror(errno));
				ret = TH_EXIT_RUNTIME;
				goto out;
			}
			dir = pdir;
		}
		if ((rc = th_state_open(&p->st, dir, 0, errstr, sizeof(errstr)))) {
			/* An untrusted store is the user's to remove: scan has no
			 * changelog to rebuild it from, and never deletes their files. */
			fprintf(stderr, "trailhound scan: %s%s\n", errstr,
				rc == TH_EUNTRUSTED ? " (move it away or delete it, then scan again)"
						    : "");
			ret = rc == TH_EUNTRUSTED ? TH_EXIT_CONFIG : TH_EXIT_RUNTIME;
			goto out;
		}
		/* --parse-only detects nothing and commits nothing: the spool
		 * stays for the next run that does */
		if (s.persistent && !s.parse_only) {
			char sp[4200];
			snprintf(sp, sizeof(sp), "%s/alerts.pending", dir);
			if (spool_open(p, sp, errstr, sizeof(errstr))) {
				fprintf(stderr, "trailhound scan: %s\n", errstr);
				ret = TH_EXIT_RUNTIME;
				goto out;
			}
		}
		if (avro_path && i > 0 &&
		    th_avro_alert_new(&p->avro, th_config_alert_schema(&cf), schema_id, errstr,
				      sizeof(errstr))) {
			fprintf(stderr, "trailhound scan: %s\n", errstr);
			ret = TH_EXIT_CONFIG;
			goto out;
		}
		/* Partitions get parsed events from the reading thread (which
		 * alone checks the event-time bound against the wall clock). */
		if (th_detector_new(&p->det, &cf.detect, en, p->st, on_alert, p)) {
			fprintf(stderr, "trailhound scan: out of memory\n");
			ret = TH_EXIT_RUNTIME;
			goto out;
		}
	}
	if (s.persistent && ledger_open(&s, state_dir, errstr, sizeof(errstr))) {
		fprintf(stderr, "trailhound scan: %s\n", errstr);
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	for (int i = 0; s.persistent && !s.parse_only && i < s.nparts; i++)
		if ((rc = progress_drop_done(&s.parts[i]))) {
			fprintf(stderr, "trailhound scan: %s\n", th_strerror(rc));
			ret = TH_EXIT_RUNTIME;
			goto out;
		}
	if (dead_path && !(s.dead = fopen(dead_path, "w"))) {
		fprintf(stderr, "trailhound scan: %s: %s\n", dead_path, strerror(errno));
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (avro_path && !(s.avro_out = fopen(avro_path, "wb"))) {
		fprintf(stderr, "trailhound scan: %s: %s\n", avro_path, strerror(errno));
		ret = TH_EXIT_USAGE;
		goto out;
	}
	if (th_parser_new(&s.parser, (size_t)cf.record_max)) {
		fprintf(stderr, "trailhound scan: out of memory\n");
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	th_parser_set_max_future_skew(s.parser, cf.max_future_skew_ms);
	s.progress = !no_progress && isatty(STDERR_FILENO);
	s.t0 = now_s();

	char *dash[] = {"-"};
	char **inputs = argc > optind ? argv + optind : dash;
	int ninputs = argc > optind ? argc - optind : 1;
	const struct th_archive_file *af;
	if (s.progress) {
		/* The ETA needs the total: one listing pass (names and sizes only
		 * for S3-named files), done only for a person watching. */
		s.counting = true;
		if (th_archive_new(&ar, inputs, ninputs, on_skip, &s) == 0)
			while (th_archive_next(ar, &af) == 0)
				if (!af->stream && !(s.ledger && ledger_has(&s, af->ledger)))
					s.bytes_total += af->size;
		th_archive_destroy(ar);
		ar = NULL;
		s.counting = false;
	}
	if (th_archive_new(&ar, inputs, ninputs, on_skip, &s)) {
		fprintf(stderr, "trailhound scan: out of memory\n");
		ret = TH_EXIT_RUNTIME;
		goto out;
	}
	s.threaded = s.nparts > 1 && !s.parse_only;
	for (int i = 0; s.threaded && i < s.nparts; i++) {
		if (pthread_create(&s.parts[i].thr, NULL, part_main, &s.parts[i])) {
			fprintf(stderr, "trailhound scan: cannot start a thread\n");
			s.fatal = TH_EFATAL;
			break;
		}
		s.parts[i].started = true;
	}
	struct th_sink sink = {on_event, on_reject, &s};
	while (!s.fatal && (rc = th_archive_next(ar, &af)) == 0) {
		rc = read_one(&s, af, &sink, errstr, sizeof(errstr));
		if (rc == TH_EIO && !s.fatal)
			ret = TH_EXIT_INPUT;
		else if (rc && !s.fatal)
			s.fatal = rc;
	}
	if (rc == TH_ENOMEM && !s.fatal)
		s.fatal = rc;
	for (int i = 0; i < s.nparts; i++) {
		struct part *p = &s.parts[i];
		if (!p->started)
			continue;
		part_push(p);
		pthread_mutex_lock(&p->mu);
		p->eof = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thr, NULL);
		p->started = false;
	}
	if (!s.fatal && (rc = first_fatal(&s)))
		s.fatal = rc;
	if (!s.fatal && !s.parse_only) {
		/* End of input: decide every use still held for late attribution. */
		for (int i = 0; i < s.nparts && !s.fatal; i++)
			if ((rc = th_detector_advance(s.parts[i].det, true)) ||
			    (rc = spool_write(&s.parts[i])) ||
			    (rc = th_detector_checkpoint(s.parts[i].det)) ||
			    (rc = th_state_commit(s.parts[i].st, 0))) {
				fprintf(stderr, "trailhound scan: %s\n", th_strerror(rc));
				s.fatal = rc;
			}
	}
	if (s.progress)
		show_progress(&s, true);
	if (!s.fatal && fents_retire(&s)) {
		fprintf(stderr, "trailhound scan: writing files.done: %s\n", strerror(errno));
		s.fatal = TH_EIO;
	}
	/* every file of this run is named done now: its progress goes */
	if (!s.fatal)
		for (int i = 0; s.persistent && !s.parse_only && !s.fatal && i < s.nparts; i++)
			if ((rc = progress_drop_done(&s.parts[i]))) {
				fprintf(stderr, "trailhound scan: %s\n", th_strerror(rc));
				s.fatal = rc;
			}
	if (merge_alerts(&s, &m) && !s.fatal)
		s.fatal = TH_EIO;
	/* Alerts sit in stdio's buffer until here: a full disk or closed pipe
	 * shows up only now, and must not pass as "no more alerts". */
	if ((fflush(stdout) || ferror(stdout)) && !s.out_err)
		s.out_err = errno ? errno : EIO;
	if (s.out_err) {
		fprintf(stderr, "trailhound scan: writing alerts to stdout: %s\n", strerror(s.out_err));
		if (!s.fatal)
			s.fatal = TH_EIO;
	}
	/* Delivered: the spooled alerts (this run's and a killed run's) are
	 * out, and must not come again. Undelivered, they stay for the next run. */
	if (!s.out_err && !s.parse_only &&
	    (!s.avro_out || (fflush(s.avro_out) == 0 && !ferror(s.avro_out))))
		for (int i = 0; i < s.nparts; i++) {
			struct part *p = &s.parts[i];
			if (p->spool && (ftruncate(fileno(p->spool), 0) || fsync(fileno(p->spool)))) {
				fprintf(stderr, "trailhound scan: emptying alerts.pending: %s\n",
					strerror(errno));
				if (!s.fatal)
					s.fatal = TH_EIO;
			}
		}
	if (s.dead && (fflush(s.dead) || ferror(s.dead)) && !s.dead_err) {
		s.dead_err = errno ? errno : EIO;
		fprintf(stderr, "trailhound scan: dead letter %s: %s\n", dead_path,
			strerror(s.dead_err));
	}
	if (s.dead_err && !s.fatal)
		s.fatal = TH_EIO;
	sum_stats(&s, &ds);
	/* Alerts by variation as written (a resumed run also writes the alerts
	 * a killed run spooled, which this run's detectors did not count). */
	memset(ds.alerts, 0, sizeof(ds.alerts));
	for (size_t i = 0; i < m.n; i++)
		if (m.v[i].variation >= 0 &&
		    (size_t)m.v[i].variation < sizeof(ds.alerts) / sizeof(ds.alerts[0]))
			ds.alerts[m.v[i].variation]++;
	print_summary(&s, &ds, &m, now_s() - s.t0);
	if (summary_path && write_summary_json(&s, &ds, &m, summary_path) && !s.fatal)
		s.fatal = TH_EIO;
	if (s.fatal)
		ret = TH_EXIT_RUNTIME;
	else if (ret == TH_EXIT_OK && s.alerts)
		ret = TH_EXIT_ALERTS;
out:
	for (int i = 0; s.parts && i < s.nparts; i++) {
		struct part *p = &s.parts[i];
		if (p->started) {
			pthread_mutex_lock(&p->mu);
			p->eof = true;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
			pthread_join(p->thr, NULL);
		}
		th_detector_destroy(p->det);
		th_state_close(p->st);
		if (p->spool)
			fclose(p->spool);
		th_avro_alert_destroy(p->avro);
		for (size_t k = 0; k < p->nalerts; k++)
			free(p->alerts[k].account);
		free(p->alerts);
		th_wbuf_free(&p->json);
		th_wbuf_free(&p->avro_blob);
		th_wbuf_free(&p->msg);
		for (struct batch *b = p->qhead, *nb; b; b = nb) {
			nb = b->next;
			th_wbuf_free(&b->w);
			free(b);
		}
		for (struct batch *b = p->spare, *nb; b; b = nb) {
			nb = b->next;
			th_wbuf_free(&b->w);
			free(b);
		}
		if (p->filling) {
			th_wbuf_free(&p->filling->w);
			free(p->filling);
		}
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
	}
	free(s.parts);
	free(m.v);
	th_archive_destroy(ar);
	th_parser_destroy(s.parser);
	for (size_t i = s.fents_freed; i < s.nfents; i++)
		if (s.fents[i]) {
			free(s.fents[i]->path);
			free(s.fents[i]->ledger);
			free(s.fents[i]);
		}
	free(s.fents);
	if (s.ledger)
		fclose(s.ledger);
	ledger_free(&s);
	th_enrich_destroy(en);
	th_config_free(&cf);
	if (s.dead && fclose(s.dead) && ret != TH_EXIT_RUNTIME) {
		fprintf(stderr, "trailhound scan: dead letter %s: %s\n", dead_path, strerror(errno));
		ret = TH_EXIT_RUNTIME;
	}
	if (s.avro_out && fclose(s.avro_out) && ret != TH_EXIT_RUNTIME) {
		fprintf(stderr, "trailhound scan: %s: %s\n", avro_path, strerror(errno));
		ret = TH_EXIT_RUNTIME;
	}
	if (tmpdir[0])
		nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return ret;
}
