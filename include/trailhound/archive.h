/*
 * Archives: the CloudTrail log files of a backtest, in delivery order.
 *
 * An S3 trail archive holds one file per account, region and 5-minute window,
 * AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
 *   <account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<id>.json.gz
 * Within one region prefix, name order is time order; across prefixes it is
 * not. th_archive walks the directories and files it is given and hands out
 * their files by (delivery timestamp, file name): a k-way merge of one lazy
 * stream per time-ordered subtree (a directory holding YYYY directories), so
 * memory grows with the number of prefixes, not the number of files. A file
 * without a timestamp in its name sorts by its first eventTime.
 *
 * What is not a CloudTrail log file (digest files, .DS_Store, other files the
 * framing does not accept), symlink loops, files seen twice and unreadable
 * entries are reported through on_skip and never stop the walk.
 *
 * Ownership: th_archive_new() copies what it needs from @p paths. A file
 * returned by th_archive_next() is valid until the next call.
 */
#ifndef TRAILHOUND_ARCHIVE_H
#define TRAILHOUND_ARCHIVE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum th_archive_skip {
	TH_SKIP_NOT_CLOUDTRAIL, /* no CloudTrail record where the framing looked */
	TH_SKIP_DIGEST,		/* CloudTrail-Digest/ files: hashes, no events */
	TH_SKIP_HIDDEN,		/* dot files such as .DS_Store */
	TH_SKIP_SYMLINK_LOOP,   /* a directory reached again through a link */
	TH_SKIP_DUPLICATE,	/* a file reached again (a link, or named twice) */
	TH_SKIP_NOT_REGULAR,	/* FIFO, socket, device found while walking */
	TH_SKIP_UNREADABLE,	/* stat/opendir/open failed */
	TH_SKIP_DONE,		/* already processed (recorded in the --state ledger) */
	TH_SKIP__COUNT
};

const char *th_archive_skip_name(enum th_archive_skip why);

struct th_archive_file {
	const char *path;   /* to open */
	const char *ledger; /* identity for the resume ledger: the S3 name, or
			       path-relative-to-root|size|mtime */
	int64_t ts_ms;	    /* delivery timestamp, first eventTime, or INT64_MIN */
	uint64_t size;
	bool explicit_arg;  /* named on the command line (not found by walking) */
	bool stream;	    /* stdin or a pipe: can be read only once */
};

typedef void (*th_archive_skip_fn)(void *ctx, const char *path, enum th_archive_skip why,
				   const char *detail);

struct th_archive;

/**
 * @brief Plan a walk over @p paths (files, directories, "-" for stdin).
 * @returns 0, TH_ENOMEM. Explicit arguments that cannot be stat'ed are still
 *          returned by th_archive_next() so the caller reports them as
 *          before (exit 3).
 */
int th_archive_new(struct th_archive **ap, char *const *paths, int n, th_archive_skip_fn on_skip,
		   void *ctx);
/** @returns 0 with *f set, TH_ENOTFOUND at the end, TH_ENOMEM. */
int th_archive_next(struct th_archive *a, const struct th_archive_file **f);
void th_archive_destroy(struct th_archive *a);

/**
 * @brief The delivery timestamp in an S3 CloudTrail log file name.
 * @returns true and *ts_ms when @p name (a basename) has the S3 form.
 */
bool th_archive_s3_name(const char *name, int64_t *ts_ms);

/**
 * @brief The delivery time of the log file at @p path (a path or an S3 key:
 *        its last component is looked at), for th_parser_set_delivered().
 * @returns the time, or INT64_MIN when the name is not a CloudTrail S3 name.
 */
int64_t th_archive_delivered(const char *path);

#ifdef __cplusplus
}
#endif

#endif
