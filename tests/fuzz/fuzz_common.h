/*
 * Helpers shared by the fuzz targets: oracles (UTF-8 and JSON validity, the
 * Avro alert decoded back and compared field by field) and scratch space.
 * An oracle that fails calls fuzz_fail(), which prints what broke and aborts,
 * so libFuzzer saves the input as a crash and the replay test fails.
 */
#ifndef TRAILHOUND_FUZZ_COMMON_H
#define TRAILHOUND_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhound/alert.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Print "fuzz oracle: <what>" and abort(). */
void fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/** @brief Is [s, s+n) well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
bool fuzz_utf8_valid(const void *s, size_t n);

/** @brief Is [s, s+n) one valid JSON document (simdjson, which also checks UTF-8)? */
bool fuzz_json_valid(const char *s, size_t n);

/**
 * @brief Decode a Confluent-framed Avro alert with avro-c's generic reader
 *        against @p schema_path and compare it with @p a: every valid UTF-8
 *        string byte for byte (NULL as null in nullable fields, "" elsewhere;
 *        an invalid one must come back as valid UTF-8), every number, every
 *        list. Calls fuzz_fail() on any difference.
 */
void fuzz_avro_check(const char *schema_path, const struct th_alert *a, const uint8_t *msg,
		     size_t len, int32_t schema_id);

/** @brief Release the reader fuzz_avro_check() keeps (for leak checkers). */
void fuzz_avro_check_free(void);

/**
 * @brief A fresh private directory for scratch files, on tmpfs when
 *        /dev/shm exists (LMDB commits are then cheap), removed at exit.
 * @returns the path (static storage) or NULL.
 */
const char *fuzz_scratch_dir(const char *tag);

/** @brief Path of the shared reference data (TH_SHARED_DATA), or NULL if absent. */
const char *fuzz_shared_data(void);

#ifdef __cplusplus
}
#endif

#endif
