/*
 * schema/src/schema_internal.h - helpers shared by the schema module's files:
 * number and date formatting and the wrapper table.
 */
#ifndef MG_SCHEMA_INTERNAL_H
#define MG_SCHEMA_INTERNAL_H

#include "mg/schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any double written by mg_schema__double_format (plus NUL). */
#define MG_SCHEMA_DOUBLE_MAX 400

/* The canonical quiet NaN the relaxed mapping writes and reads back. */
#define MG_SCHEMA_CANONICAL_NAN_BITS UINT64_C(0x7ff8000000000000)

/* Dates from 1970-01-01 to 9999-12-31T23:59:59.999Z are written as ISO-8601. */
#define MG_SCHEMA_DATE_ISO_MAX_MS INT64_C(253402300799999)

/* Length of "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#define MG_SCHEMA_DATE_ISO_LEN 24

/* The wrapper objects of docs/type-mapping.md, by key set. */
typedef enum {
    MG_SCHEMA_WRAP_NONE = 0,
    MG_SCHEMA_WRAP_OID,
    MG_SCHEMA_WRAP_SYMBOL,
    MG_SCHEMA_WRAP_INT32,
    MG_SCHEMA_WRAP_INT64,
    MG_SCHEMA_WRAP_DOUBLE,
    MG_SCHEMA_WRAP_DECIMAL,
    MG_SCHEMA_WRAP_BINARY,
    MG_SCHEMA_WRAP_CODE,
    MG_SCHEMA_WRAP_CODE_SCOPE,
    MG_SCHEMA_WRAP_TIMESTAMP,
    MG_SCHEMA_WRAP_REGEX,
    MG_SCHEMA_WRAP_DBPOINTER,
    MG_SCHEMA_WRAP_DATE,
    MG_SCHEMA_WRAP_MINKEY,
    MG_SCHEMA_WRAP_MAXKEY,
    MG_SCHEMA_WRAP_UNDEFINED,
    MG_SCHEMA_WRAP_STRING_BASE64,
    MG_SCHEMA_WRAP_LITERAL,
    MG_SCHEMA_WRAP_FIELD_PAIRS,
} mg_schema_wrap_t;

/* The key of the wrapper of a document with duplicate keys (docs/type-mapping.md). */
#define MG_SCHEMA_FIELD_PAIRS     "$fieldPairs"
#define MG_SCHEMA_FIELD_PAIRS_LEN 11

/*
 * mg_schema__wrap_kind returns the wrapper whose key set is exactly {k1} (k2
 * NULL) or {k1, k2} (distinct keys, any order), or MG_SCHEMA_WRAP_NONE.
 */
mg_schema_wrap_t mg_schema__wrap_kind(const char *k1, size_t l1, const char *k2, size_t l2);

/*
 * mg_schema__doc_is_reserved returns true when the distinct key set of the
 * document iter (positioned before its first element) is a wrapper's key
 * set, so that the document must be written inside {"$literal": ...}.
 * Corrupt BSON answers false (the caller's own walk reports it).
 */
bool mg_schema__doc_is_reserved(const bson_iter_t *doc_iter);

/*
 * mg_schema__double_format writes finite x (not -0.0) into out (at least
 * MG_SCHEMA_DOUBLE_MAX bytes) in plain decimal notation that always has a
 * '.' and at least one digit after it, with few enough digits to read back
 * as exactly x. No exponent: jsonb would print 1e300 without a '.', making
 * it look like an integer. Returns the length (out is NUL-terminated).
 */
size_t mg_schema__double_format(double x, char *out);

/*
 * mg_schema__i64_format writes v in decimal into out (at least 21 bytes, not
 * NUL-terminated) and returns the length.
 */
size_t mg_schema__i64_format(int64_t v, char *out);

/* mg_schema__u64_format is mg_schema__i64_format for unsigned values. */
size_t mg_schema__u64_format(uint64_t v, char *out);

/*
 * mg_schema__decimal_value returns the encoding of dec's value: dec itself,
 * except that a coefficient above 10^34 - 1 (non-canonical, in either
 * encoding form) is zero (IEEE 754-2008 3.5.2, as MongoDB reads it) with
 * dec's sign and exponent. NaN and infinities come back unchanged.
 */
bson_decimal128_t mg_schema__decimal_value(const bson_decimal128_t *dec);

/*
 * mg_schema__decimal_text writes libbson's string of dec's value
 * (mg_schema__decimal_value) into text: "0E+3" for a non-canonical
 * coefficient with exponent 3, where libbson alone prints 35 digits for
 * coefficients from 10^34 to about 1.04 x 10^34.
 */
void mg_schema__decimal_text(const bson_decimal128_t *dec, char text[BSON_DECIMAL128_STRING]);

/*
 * mg_schema__date_format writes ms (within 0..MG_SCHEMA_DATE_ISO_MAX_MS) as
 * "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (MG_SCHEMA_DATE_ISO_LEN bytes).
 */
void mg_schema__date_format(int64_t ms, char *out);

/*
 * mg_schema__date_parse reads "YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z" (len bytes)
 * into milliseconds since the epoch. Returns false on any other text.
 */
bool mg_schema__date_parse(const char *text, size_t len, int64_t *ms);

/*
 * mg_schema__append_raw appends one element built by hand: type, key (klen
 * bytes) and the value's encoded bytes, so values that libbson's typed
 * append functions would change (regex options they sort or drop, code and
 * namespaces holding U+0000) stay exact. Returns false when dst would grow
 * past BSON's size limit or memory runs out.
 */
bool mg_schema__append_raw(bson_t *dst, bson_type_t type, const char *key, size_t klen,
                           const uint8_t *payload, size_t plen);

/*
 * mg_schema__sha256 writes the SHA-256 digest (FIPS 180-4) of len bytes of
 * data into digest.
 */
void mg_schema__sha256(const void *data, size_t len, uint8_t digest[32]);

/* mg_schema__hex lower-case hex digits. */
extern const char mg_schema__hex[16];

#endif /* MG_SCHEMA_INTERNAL_H */
