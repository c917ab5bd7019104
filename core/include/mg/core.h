/*
 * core/include/mg/core.h - errors, logging, config loading, exit codes,
 * secret redaction and the command tree shared by every binary.
 *
 * This header compiles alone: libbson and libpq types are forward-declared
 * here, and only the implementation files that translate them include the
 * libraries' headers.
 */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MG_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))

/* Forward declarations of library types translated at the boundary. */
struct _bson_error_t; /* bson_error_t */
struct pg_conn;       /* PGconn */
struct pg_result;     /* PGresult */

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_ERROR_DOMAIN_NONE = 0,
    MG_ERROR_DOMAIN_CORE,   /* our own logic: bad state, cap exceeded */
    MG_ERROR_DOMAIN_SYSTEM, /* errno; code is the errno value */
    MG_ERROR_DOMAIN_CONFIG, /* bad option, file, environment or flag */
    MG_ERROR_DOMAIN_MONGO,  /* bson_error_t; code is the server/driver code */
    MG_ERROR_DOMAIN_PG,     /* libpq; sqlstate holds the SQLSTATE */
    MG_ERROR_DOMAIN_ETCD,   /* etcd v3 JSON gateway */
    MG_ERROR_DOMAIN_HTTP,   /* HTTP endpoints and clients */
    MG_ERROR_DOMAIN_STATE,  /* the recorded state forbids it (migrate: _migrate); exit code 8 */
} mg_error_domain_t;

#define MG_ERROR_MESSAGE_SIZE 512

/* Codes of MG_ERROR_DOMAIN_CORE and MG_ERROR_DOMAIN_CONFIG. */
enum {
    MG_ERROR_CODE_GENERIC = 1,
    MG_ERROR_CODE_INVALID_ARGUMENT,
    MG_ERROR_CODE_LIMIT,     /* a cap set at init was exceeded */
    MG_ERROR_CODE_NOT_FOUND, /* a named thing does not exist */
    MG_ERROR_CODE_PARSE,     /* malformed input */
};

/*
 * mg_error_t - one stack-allocated, fixed-size error. Fallible functions take
 * `mg_error_t *error` last; it may be NULL. The message is redacted (no
 * passwords) when it is set.
 */
typedef struct {
    mg_error_domain_t domain;
    int32_t code;
    char sqlstate[6]; /* five characters + NUL; empty unless domain PG */
    char message[MG_ERROR_MESSAGE_SIZE];
} mg_error_t;

/* mg_error_clear resets error (NULL allowed) to "no error". */
void mg_error_clear(mg_error_t *error);

/* mg_error_is_set returns true when error holds an error. */
bool mg_error_is_set(const mg_error_t *error);

/*
 * mg_error_set fills error (NULL allowed) with domain, code and a formatted,
 * redacted message. Always returns false so callers can `return
 * mg_error_set(...)`.
 */
bool mg_error_set(mg_error_t *error, mg_error_domain_t domain, int32_t code, const char *fmt, ...)
    MG_PRINTF(4, 5);

/*
 * mg_error_set_errno fills error from errnum (pass errno captured right after
 * the failing call): domain SYSTEM, code errnum, message "<fmt>: <strerror>".
 * Returns false.
 */
bool mg_error_set_errno(mg_error_t *error, int errnum, const char *fmt, ...) MG_PRINTF(3, 4);

/*
 * mg_error_set_bson translates a libbson/libmongoc error: domain MONGO, code
 * kept, message "<fmt>: <bson message>". Returns false.
 */
bool mg_error_set_bson(mg_error_t *error, const struct _bson_error_t *bson_error, const char *fmt,
                       ...) MG_PRINTF(3, 4);

/*
 * mg_error_set_pgresult translates a failed PGresult: domain PG, SQLSTATE
 * kept, message "<fmt>: <primary message>[ (detail)]". Returns false.
 */
bool mg_error_set_pgresult(mg_error_t *error, const struct pg_result *result, const char *fmt, ...)
    MG_PRINTF(3, 4);

/*
 * mg_error_set_pgconn translates a connection-level libpq failure (no
 * PGresult): domain PG, SQLSTATE "08006" unless libpq knows better, message
 * "<fmt>: <PQerrorMessage>". Returns false.
 */
bool mg_error_set_pgconn(mg_error_t *error, const struct pg_conn *conn, const char *fmt, ...)
    MG_PRINTF(3, 4);

/*
 * mg_error_prefix puts "<fmt>: " in front of an error's message, to add
 * context while passing an error up. No-op when error is NULL or unset.
 */
void mg_error_prefix(mg_error_t *error, const char *fmt, ...) MG_PRINTF(2, 3);

/* mg_error_domain_name returns a static lower-case name for domain. */
const char *mg_error_domain_name(mg_error_domain_t domain);

/* ------------------------------------------------------------------------
 * Exit codes: one table, documented in docs/exit-codes.md.
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_EXIT_OK = 0,
    MG_EXIT_FAILURE = 1,     /* unclassified failure */
    MG_EXIT_USAGE = 2,       /* bad command line, config file or environment */
    MG_EXIT_SOURCE = 3,      /* the MongoDB source failed or refused */
    MG_EXIT_TARGET = 4,      /* the PostgreSQL target failed or refused */
    MG_EXIT_MISMATCH = 5,    /* validation found a persistent difference */
    MG_EXIT_INTERRUPTED = 6, /* stopped by a signal at a safe point; resumable */
    MG_EXIT_ABORTED = 7,     /* cutover aborted; source unfrozen */
    MG_EXIT_STATE = 8,       /* the _migrate state forbids the command */
    MG_EXIT_INTERNAL = 70,   /* a bug: an invariant did not hold */
} mg_exit_code_t;

typedef struct {
    mg_exit_code_t code;
    const char *name;    /* "usage" */
    const char *meaning; /* one line for operators */
} mg_exit_code_info_t;

/* mg_exit_code_table returns the static table; *count receives its length. */
const mg_exit_code_info_t *mg_exit_code_table(size_t *count);

/* mg_exit_code_name returns the static name of code, or "unknown". */
const char *mg_exit_code_name(int code);

/* mg_exit_code_for_error maps an error's domain to an exit code. */
mg_exit_code_t mg_exit_code_for_error(const mg_error_t *error);

/* ------------------------------------------------------------------------
 * Redaction
 * ------------------------------------------------------------------------ */

#define MG_REDACTED "********"

/*
 * mg_redact_learn tells the redactor about a string the process was given
 * (an option's value): the password of a MongoDB URI (read with
 * mongoc_uri_t), of a libpq URI or conninfo string (PQconninfoParse), or of
 * any scheme://user:PASSWORD@host, and the whole text when secret is true.
 * From then on every redaction replaces each of them, in every form it can
 * take in a text (as given, percent-encoded, JSON- and conninfo-escaped),
 * whatever bytes it holds. Secrets shorter than 4 bytes are only masked by
 * the scanner (where they stand in a URI or conninfo string). Thread-safe;
 * what is learnt stays for the life of the process.
 */
void mg_redact_learn(const char *text, bool secret);

/*
 * mg_redact_copy writes text into out (size outsz, always NUL-terminated,
 * truncated when too small) with every learnt secret (mg_redact_learn) and
 * every secret the scanner recognises replaced by MG_REDACTED: the password
 * of a URI's userinfo (scheme://user:PASSWORD@host; the URI ends at
 * whitespace), libpq conninfo `password=VALUE` (quoted, or unquoted to the
 * next whitespace), URI query `password=VALUE`, and JSON
 * `"password": "VALUE"`. Returns the number of secrets replaced.
 */
size_t mg_redact_copy(const char *text, char *out, size_t outsz);

/*
 * mg_redact_dup returns a malloc'd redacted copy of text (caller frees), or
 * NULL when text is NULL or memory is exhausted.
 */
char *mg_redact_dup(const char *text);

/* ------------------------------------------------------------------------
 * Buffers: a growable byte buffer with a hard cap set at init.
 * ------------------------------------------------------------------------ */

/*
 * mg_buf_t - bytes in data[0..len), always followed by a NUL byte that is
 * not counted. Growth doubles capacity up to `limit`; asking for more than
 * `limit` bytes is an error (MG_ERROR_CODE_LIMIT), never a silent realloc
 * loop. The struct is public so hot loops can write at data + len after
 * mg_buf_reserve.
 */
typedef struct {
    char *data;
    size_t len;
    size_t cap;   /* allocated bytes, excluding the NUL slot */
    size_t limit; /* the most len may ever reach */
} mg_buf_t;

/* mg_buf_init sets up an empty buffer with the given cap; allocates lazily. */
void mg_buf_init(mg_buf_t *buf, size_t limit);

/* mg_buf_cleanup frees the buffer's memory; the buffer may be re-initialised. */
void mg_buf_cleanup(mg_buf_t *buf);

/* mg_buf_reset empties the buffer, keeping its memory. */
void mg_buf_reset(mg_buf_t *buf);

/*
 * mg_buf_reserve makes room for `more` bytes after len. Fails (buffer
 * untouched) when len + more exceeds the limit or memory is exhausted.
 */
bool mg_buf_reserve(mg_buf_t *buf, size_t more, mg_error_t *error);

/* mg_buf_append copies n bytes; fails like mg_buf_reserve. */
bool mg_buf_append(mg_buf_t *buf, const void *bytes, size_t n, mg_error_t *error);

/* mg_buf_append_str appends a NUL-terminated string (without its NUL). */
bool mg_buf_append_str(mg_buf_t *buf, const char *s, mg_error_t *error);

/* mg_buf_printf appends formatted text; fails like mg_buf_reserve. */
bool mg_buf_printf(mg_buf_t *buf, mg_error_t *error, const char *fmt, ...) MG_PRINTF(3, 4);

/* ------------------------------------------------------------------------
 * Files: whole-file reads and the one atomic write.
 * ------------------------------------------------------------------------ */

/* How mg_file_write_atomic sets the file's mode and owner. */
typedef struct {
    int mode; /* >= 0: the file's mode; -1: 0600 for a new file, an existing one keeps its own */
    long uid; /* >= 0: chown the file to uid (needs the privilege); -1: leave */
    long gid; /* >= 0: chown the file to gid; -1: leave */
} mg_file_write_options_t;

/*
 * mg_file_write_atomic replaces path with len bytes of data so that a
 * reader sees the old file or the new one, never a mix, even across a
 * crash: a temp file beside it (a random name created exclusively, 0600:
 * nothing planted there is followed), fsync, rename over path, fsync of
 * the folder. A regular file at path hands on its mode and owner (mode
 * -1); a link there is replaced, what it points at left alone. options may
 * be NULL (mode -1, owner left). On failure path is untouched and the temp
 * file is removed.
 */
bool mg_file_write_atomic(const char *path, const void *data, size_t len,
                          const mg_file_write_options_t *options, mg_error_t *error);

/*
 * mg_file_read appends the whole file at path to out (within out's cap);
 * out->data is allocated and NUL-terminated on success.
 */
bool mg_file_read(const char *path, mg_buf_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Base64 (RFC 4648, standard alphabet, padded)
 * ------------------------------------------------------------------------ */

/* mg_hex_digit returns the value of the hexadecimal digit c (either case), or -1. */
int mg_hex_digit(char c);

/* mg_base64_encoded_len returns the length of n bytes encoded. */
size_t mg_base64_encoded_len(size_t n);

/* mg_base64_encode appends the encoding of n bytes of data to out. */
bool mg_base64_encode(const void *data, size_t n, mg_buf_t *out, mg_error_t *error);

/*
 * mg_base64_encode_to writes the encoding of n bytes of data into out,
 * which has room for mg_base64_encoded_len(n) bytes (no NUL is written),
 * and returns that length: for callers that reserved the room already
 * (the renderer's hot path).
 */
size_t mg_base64_encode_to(const void *data, size_t n, char *out);

/*
 * mg_base64_decode appends the bytes that text (len characters, padded)
 * encodes to out. Fails with MG_ERROR_CODE_PARSE on a character outside
 * the alphabet, misplaced padding or a length that is not a multiple of
 * four; out is then as it was.
 */
bool mg_base64_decode(const char *text, size_t len, mg_buf_t *out, mg_error_t *error);

/*
 * mg_base64_decode_canonical is mg_base64_decode that also refuses a text
 * that is not the encoding mg_base64_encode writes for its bytes: pad bits
 * (the unused low bits of a padded last group) that are not zero (RFC 4648
 * §3.5), so that one byte string has exactly one text.
 */
bool mg_base64_decode_canonical(const char *text, size_t len, mg_buf_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * UTF-8 (as PostgreSQL accepts it: no overlong forms, no surrogates, nothing
 * above U+10FFFF)
 * ------------------------------------------------------------------------ */

/*
 * mg_utf8_char_len returns the length (1..4) of the well-formed UTF-8
 * character at s (n > 0 bytes available; an ASCII byte, NUL included, is
 * 1), or 0 when the bytes there are not one.
 */
size_t mg_utf8_char_len(const uint8_t *s, size_t n);

/* mg_utf8_valid returns true when n bytes of data are well-formed UTF-8. */
bool mg_utf8_valid(const void *data, size_t n);

/*
 * mg_utf8_copy writes len bytes of text into out (outsz bytes, always
 * NUL-terminated unless outsz is 0) as well-formed UTF-8 without NUL: a
 * byte that does not start a character, and NUL, become the four
 * characters \xNN. What does not fit is cut at a character (or escape)
 * boundary and "..." ends the copy. Returns the length of out. For every
 * text that may be cut or that comes from outside before it reaches
 * PostgreSQL, a log or a report (error messages, _id descriptions).
 */
size_t mg_utf8_copy(char *out, size_t outsz, const char *text, size_t len);

/*
 * mg_utf8_trim drops an incomplete character from the end of the
 * NUL-terminated s, as snprintf leaves it when it cuts. Returns the new
 * length.
 */
size_t mg_utf8_trim(char *s);

/* ------------------------------------------------------------------------
 * UTF-8 (as PostgreSQL accepts it: no overlong forms, no surrogates, nothing
 * above U+10FFFF)
 * ------------------------------------------------------------------------ */

/*
 * mg_utf8_char_len returns the length (1..4) of the well-formed UTF-8
 * character at s (n > 0 bytes available; an ASCII byte, NUL included, is
 * 1), or 0 when the bytes there are not one.
 */
size_t mg_utf8_char_len(const uint8_t *s, size_t n);

/* mg_utf8_valid returns true when n bytes of data are well-formed UTF-8. */
bool mg_utf8_valid(const void *data, size_t n);

/*
 * mg_utf8_copy writes len bytes of text into out (outsz bytes, always
 * NUL-terminated unless outsz is 0) as well-formed UTF-8 without NUL: a
 * byte that does not start a character, and NUL, become the four
 * characters \xNN. What does not fit is cut at a character (or escape)
 * boundary and "..." ends the copy. Returns the length of out. For every
 * text that may be cut or that comes from outside before it reaches
 * PostgreSQL, a log or a report (error messages, _id descriptions).
 */
size_t mg_utf8_copy(char *out, size_t outsz, const char *text, size_t len);

/*
 * mg_utf8_trim drops an incomplete character from the end of the
 * NUL-terminated s, as snprintf leaves it when it cuts. Returns the new
 * length.
 */
size_t mg_utf8_trim(char *s);

/* ------------------------------------------------------------------------
 * UTF-8 (as PostgreSQL accepts it: no overlong forms, no surrogates, nothing
 * above U+10FFFF)
 * ------------------------------------------------------------------------ */

/*
 * mg_utf8_char_len returns the length (1..4) of the well-formed UTF-8
 * character at s (n > 0 bytes available; an ASCII byte, NUL included, is
 * 1), or 0 when the bytes there are not one.
 */
size_t mg_utf8_char_len(const uint8_t *s, size_t n);

/* mg_utf8_valid returns true when n bytes of data are well-formed UTF-8. */
bool mg_utf8_valid(const void *data, size_t n);

/*
 * mg_utf8_copy writes len bytes of text into out (outsz bytes, always
 * NUL-terminated unless outsz is 0) as well-formed UTF-8 without NUL: a
 * byte that does not start a character, and NUL, become the four
 * characters \xNN. What does not fit is cut at a character (or escape)
 * boundary and "..." ends the copy. Returns the length of out. For every
 * text that may be cut or that comes from outside before it reaches
 * PostgreSQL, a log or a report (error messages, _id descriptions).
 */
size_t mg_utf8_copy(char *out, size_t outsz, const char *text, size_t len);

/*
 * mg_utf8_trim drops an incomplete character from the end of the
 * NUL-terminated s, as snprintf leaves it when it cuts. Returns the new
 * length.
 */
size_t mg_utf8_trim(char *s);

/* ------------------------------------------------------------------------
 * JSON output: helpers over a yajl generator (yajl_gen is struct yajl_gen_t *)
 * ------------------------------------------------------------------------ */

struct yajl_gen_t;

/* mg_json_str writes s as a JSON string, or null when s is NULL. */
void mg_json_str(struct yajl_gen_t *g, const char *s);

/* mg_json_kstr writes the member "key": value (null when value is NULL). */
void mg_json_kstr(struct yajl_gen_t *g, const char *key, const char *value);
void mg_json_kint(struct yajl_gen_t *g, const char *key, int64_t value);
void mg_json_kdouble(struct yajl_gen_t *g, const char *key, double value);
void mg_json_kbool(struct yajl_gen_t *g, const char *key, bool value);

/*
 * mg_json_knumber writes "key": text, text being a number as PostgreSQL or
 * printf wrote it (null when text is NULL or empty).
 */
void mg_json_knumber(struct yajl_gen_t *g, const char *key, const char *text);

/* mg_json_take appends what g generated to out and clears g for reuse. */
bool mg_json_take(struct yajl_gen_t *g, mg_buf_t *out, mg_error_t *error);

/* mg_json_dup returns a malloc'd copy of what g generated (caller frees), or NULL. */
char *mg_json_dup(struct yajl_gen_t *g);

/* ------------------------------------------------------------------------
 * Clock
 * ------------------------------------------------------------------------ */

/* mg_now_s returns CLOCK_MONOTONIC in seconds: for durations and deadlines. */
double mg_now_s(void);

/* ------------------------------------------------------------------------
 * Logging: one JSON object per line on stderr (or text on a TTY).
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_LOG_DEBUG = 0,
    MG_LOG_INFO,
    MG_LOG_NOTICE,
    MG_LOG_WARNING,
    MG_LOG_ERROR,
    MG_LOG_FATAL,
} mg_log_level_t;

typedef enum {
    MG_LOG_FORMAT_AUTO = 0, /* text when the stream is a TTY, JSON otherwise */
    MG_LOG_FORMAT_JSON,
    MG_LOG_FORMAT_TEXT,
} mg_log_format_t;

typedef enum {
    MG_LOG_FIELD_STR,
    MG_LOG_FIELD_INT,
    MG_LOG_FIELD_UINT,
    MG_LOG_FIELD_DOUBLE,
    MG_LOG_FIELD_BOOL,
} mg_log_field_type_t;

/* A structured field; string values are redacted when written. */
typedef struct {
    const char *key;
    mg_log_field_type_t type;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } v;
} mg_log_field_t;

#define MG_LOG_STR(k, val)                                 \
    (mg_log_field_t)                                       \
    {                                                      \
        .key = (k), .type = MG_LOG_FIELD_STR, .v.s = (val) \
    }
#define MG_LOG_INT(k, val)                                          \
    (mg_log_field_t)                                                \
    {                                                               \
        .key = (k), .type = MG_LOG_FIELD_INT, .v.i = (int64_t)(val) \
    }
#define MG_LOG_UINT(k, val)                                           \
    (mg_log_field_t)                                                  \
    {                                                                 \
        .key = (k), .type = MG_LOG_FIELD_UINT, .v.u = (uint64_t)(val) \
    }
#define MG_LOG_DOUBLE(k, val)                                         \
    (mg_log_field_t)                                                  \
    {                                                                 \
        .key = (k), .type = MG_LOG_FIELD_DOUBLE, .v.d = (double)(val) \
    }
#define MG_LOG_BOOL(k, val)                                       \
    (mg_log_field_t)                                              \
    {                                                             \
        .key = (k), .type = MG_LOG_FIELD_BOOL, .v.b = (bool)(val) \
    }

/*
 * mg_log_init configures the process-wide logger: program name (borrowed,
 * must outlive the logger), minimum level and format. Safe to call again.
 * Output goes to stderr until mg_log_set_stream is called.
 */
void mg_log_init(const char *program, mg_log_level_t min_level, mg_log_format_t format);

/* mg_log_program returns the program name given to mg_log_init ("mg" before it). */
const char *mg_log_program(void);

/*
 * mg_log_set_stream sends log lines to stream (borrowed; NULL restores
 * stderr). The format decision (AUTO) and the journald check are redone.
 */
void mg_log_set_stream(FILE *stream);

/* mg_log_set_level changes the minimum level. */
void mg_log_set_level(mg_log_level_t min_level);

/* mg_log_enabled returns true when a line at level would be written. */
bool mg_log_enabled(mg_log_level_t level);

/* mg_log_level_parse maps "debug".."fatal" (also "warn") to a level. */
bool mg_log_level_parse(const char *text, mg_log_level_t *level);

/* mg_log_level_name returns the static lower-case name of level. */
const char *mg_log_level_name(mg_log_level_t level);

/* mg_log_format_parse maps "auto", "json", "text" to a format. */
bool mg_log_format_parse(const char *text, mg_log_format_t *format);

/*
 * mg_log_write writes one line: level, module (e.g. "cdc"), optional stable
 * event key (e.g. "cutover.step", NULL for none), nfields structured fields
 * and a printf-style message. Thread-safe; lines are never interleaved.
 */
void mg_log_write(mg_log_level_t level, const char *module, const char *event,
                  const mg_log_field_t *fields, size_t nfields, const char *fmt, ...)
    MG_PRINTF(6, 7);

void mg_log_writev(mg_log_level_t level, const char *module, const char *event,
                   const mg_log_field_t *fields, size_t nfields, const char *fmt, va_list ap)
    MG_PRINTF(6, 0);

/* Level check happens before any argument is formatted. */
#define MG_LOG(level, module, ...)                                       \
    do {                                                                 \
        if (mg_log_enabled(level))                                       \
            mg_log_write((level), (module), NULL, NULL, 0, __VA_ARGS__); \
    } while (0)

#define MG_LOG_FIELDS(...)                 \
    (const mg_log_field_t[]){__VA_ARGS__}, \
        sizeof((const mg_log_field_t[]){__VA_ARGS__}) / sizeof(mg_log_field_t)

/* MG_LOG_EVENT(level, module, event, MG_LOG_FIELDS(...), fmt, ...) */
#define MG_LOG_EVENT(level, module, event, ...)                    \
    do {                                                           \
        if (mg_log_enabled(level))                                 \
            mg_log_write((level), (module), (event), __VA_ARGS__); \
    } while (0)

/* mg_log_error logs error at level with its domain, code and SQLSTATE. */
void mg_log_error(mg_log_level_t level, const char *module, const mg_error_t *error);

/*
 * mg_log_install_mongoc_handler routes libmongoc/libbson log messages into
 * the logger (module "mongoc"). Call once after mongoc_init().
 */
void mg_log_install_mongoc_handler(void);

/*
 * mg_log_attach_pgconn routes a connection's notices and warnings into the
 * logger (module "libpq") with their SQLSTATE. conn is borrowed.
 */
void mg_log_attach_pgconn(struct pg_conn *conn);

/* ------------------------------------------------------------------------
 * Config: table-driven, defaults < JSON file < environment < flags.
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_CONFIG_STRING,   /* char * (owned by the config, freed by cleanup) */
    MG_CONFIG_INT,      /* int64_t within [min, max] */
    MG_CONFIG_BOOL,     /* bool; flags take no argument, --no-NAME clears */
    MG_CONFIG_DURATION, /* int64_t milliseconds: "250ms", "5s", "2m", "1h" */
    MG_CONFIG_SIZE,     /* int64_t bytes: "512", "64kB", "16MB", "1GB" */
    MG_CONFIG_ENUM,     /* int, index into choices */
    MG_CONFIG_LIST,     /* mg_strlist_t; JSON array, env comma list, repeated flag */
} mg_config_type_t;

typedef struct {
    char **items;
    size_t count;
} mg_strlist_t;

/*
 * One option. name is the JSON key (dots descend into objects: "etcd.ttl");
 * the flag is "--" + name with '.' and '_' as '-'; the environment variable
 * is PREFIX + name upper-cased with '.' and '-' as '_'.
 */
typedef struct {
    const char *name;
    mg_config_type_t type;
    size_t offset;              /* offsetof(target struct, member) */
    const char *default_value;  /* text, parsed like any other source; NULL = unset */
    int64_t min, max;           /* bounds for INT, DURATION, SIZE (0,0 = none) */
    const char *const *choices; /* ENUM: NULL-terminated */
    bool secret;                /* never printed; redacted in errors */
    bool required;
    char short_flag; /* 0 = none */
    const char *metavar;
    const char *help;
} mg_config_option_t;

typedef enum {
    MG_CONFIG_SOURCE_UNSET = 0,
    MG_CONFIG_SOURCE_DEFAULT,
    MG_CONFIG_SOURCE_FILE,
    MG_CONFIG_SOURCE_ENV,
    MG_CONFIG_SOURCE_FLAG,
} mg_config_source_t;

typedef struct mg_config mg_config_t;

/*
 * mg_config_new creates a loader for options (borrowed; must outlive the
 * config) writing into target (borrowed). env_prefix is e.g. "MIGRATE_";
 * the config file comes from the --config flag or <PREFIX>CONFIG.
 * Destroy with mg_config_destroy, which also frees the strings and lists
 * written into target.
 */
mg_config_t *mg_config_new(const mg_config_option_t *options, size_t noptions, void *target,
                           const char *env_prefix);

/* mg_config_destroy frees config and what it allocated in target; NULL ok. */
void mg_config_destroy(mg_config_t *config);

/*
 * mg_config_load applies defaults, then the JSON file, then the environment
 * (envp, NULL-terminated "K=V" strings; NULL means the process environment),
 * then argv's flags. Positional arguments are left for the caller: their
 * indices start at *first_positional. On error nothing further is applied
 * and error names the option, its source and what was expected.
 */
bool mg_config_load(mg_config_t *config, int argc, char **argv, char **envp, int *first_positional,
                    mg_error_t *error);

/* mg_config_source returns where option name's value came from. */
mg_config_source_t mg_config_source(const mg_config_t *config, const char *name);

/*
 * mg_config_source_describe returns a borrowed description of where the
 * value came from ("default", "file /etc/x.json line 4", "env MIGRATE_X",
 * "flag --x"), valid until the config is destroyed; NULL for unknown name.
 */
const char *mg_config_source_describe(const mg_config_t *config, const char *name);

/*
 * mg_config_print_help writes one line per option (flag, metavar, help,
 * default, environment variable) to stream.
 */
void mg_config_print_help(const mg_config_option_t *options, size_t noptions,
                          const char *env_prefix, FILE *stream);

/*
 * mg_config_dump_json writes the effective configuration as one JSON object
 * (secrets as MG_REDACTED, strings redacted) to stream.
 */
void mg_config_dump_json(const mg_config_t *config, FILE *stream);

/* mg_parse_duration_ms parses "250ms", "5s", "2m", "1h", or a bare ms count. */
bool mg_parse_duration_ms(const char *text, int64_t *ms);

/* mg_parse_size_bytes parses "512", "64kB", "16MB", "1GB" (powers of 1024). */
bool mg_parse_size_bytes(const char *text, int64_t *bytes);

/* ------------------------------------------------------------------------
 * The MongoDB source (libmongoc): one way to make a client, connect, run
 * commands. Messages name it "source".
 * ------------------------------------------------------------------------ */

struct _mongoc_client_t; /* mongoc_client_t */
struct _bson_t;          /* bson_t */

/* Server selection timeout of clients made here, unless the URI sets one. */
#define MG_MONGO_SERVER_SELECTION_MS 10000

/*
 * mg_mongo_client_new makes a client of uri with the error API v2; appname
 * (NULL: none) and server_selection_ms (0: libmongoc's default) apply
 * unless the URI sets them. Nothing is contacted. Returns NULL with error
 * (domain mongo) on a bad URI. Destroy with mongoc_client_destroy.
 */
struct _mongoc_client_t *mg_mongo_client_new(const char *uri, const char *appname,
                                             int32_t server_selection_ms, mg_error_t *error);

/* A checked connection to the source. */
typedef struct {
    struct _mongoc_client_t *client;
    char *uri_shown;    /* the URI with its password redacted */
    char set_name[128]; /* replica set name, "" when not a replica set */
    char version[64];   /* server version from buildInfo */
    bool is_primary;    /* isWritablePrimary (or ismaster) */
    bool is_mongos;     /* hello's msg is "isdbgrid": a sharded cluster's router */
    int32_t max_wire;
} mg_mongo_t;

/*
 * mg_mongo_open connects to uri (appname as in mg_mongo_client_new), checks
 * it answers (hello, buildInfo) within the server selection timeout (10 s
 * unless the URI says otherwise) and fills src. Errors: domain mongo (exit
 * code "source"). Release with mg_mongo_close.
 */
bool mg_mongo_open(const char *uri, const char *appname, mg_mongo_t *src, mg_error_t *error);

/* mg_mongo_close releases src (safe on a zeroed or closed src). */
void mg_mongo_close(mg_mongo_t *src);

/*
 * mg_mongo_uri_strip_password returns uri (malloc'd) without the password
 * of its userinfo, to be recorded where others can read it; *had_password
 * (may be NULL) says whether there was one. NULL when the driver cannot
 * parse uri, or on memory.
 */
char *mg_mongo_uri_strip_password(const char *uri, bool *had_password);

/*
 * mg_mongo_command runs cmd on db and stores the server reply in *reply
 * (caller destroys; initialised even on failure).
 */
bool mg_mongo_command(mg_mongo_t *src, const char *db, const struct _bson_t *cmd,
                      struct _bson_t *reply, mg_error_t *error);

/*
 * mg_mongo_last_write reads the time of the source's latest write from
 * `hello` (lastWrite.majorityOpTime, the newest write a change stream can
 * return; else lastWrite.opTime). A router (mongos) has no lastWrite: its
 * reply's operationTime, the cluster time it knows, stands in. Fails when
 * the reply has neither (not a replica set member or router).
 */
bool mg_mongo_last_write(struct _mongoc_client_t *client, uint32_t *t, uint32_t *i,
                         mg_error_t *error);

/*
 * mg_mongo_aggregate runs pipeline on db.coll and calls fn for each result
 * document (borrowed); fn returns false to stop with an error.
 */
typedef bool (*mg_mongo_doc_fn)(void *ctx, const struct _bson_t *doc, mg_error_t *error);
bool mg_mongo_aggregate(mg_mongo_t *src, const char *db, const char *coll,
                        const struct _bson_t *pipeline, mg_mongo_doc_fn fn, void *ctx,
                        mg_error_t *error);

/* ------------------------------------------------------------------------
 * The PostgreSQL target (libpq): connect, statements, and the one
 * reconnect loop. Messages name it "target".
 * ------------------------------------------------------------------------ */

/*
 * mg_pg_connect opens a libpq connection (URI or conninfo) with
 * application_name the program's name unless the string sets one, a 10 s
 * connect timeout unless it sets one, and notices routed into the logger.
 * Errors: domain pg (exit code "target"). Caller PQfinish-es.
 */
struct pg_conn *mg_pg_connect(const char *conninfo, mg_error_t *error);

/*
 * mg_pg_conninfo_strip_password returns conninfo (a URI or key=value
 * string; malloc'd) without its password, as libpq's parser reads it: a
 * URI keeps its form (its userinfo password and password= parameters
 * dropped) when libpq then finds no password in it, anything else becomes
 * key='value' pairs; *had_password (may be NULL) says whether there was
 * one. NULL when libpq cannot parse it, or on memory.
 */
char *mg_pg_conninfo_strip_password(const char *conninfo, bool *had_password);

/* mg_pg_exec runs sql (no parameters; rows ignored). */
bool mg_pg_exec(struct pg_conn *conn, const char *sql, mg_error_t *error);

/*
 * mg_pg_query runs sql with text parameters (NULL = SQL NULL) and returns
 * the result (caller PQclear), or NULL with error set; the message names
 * the statement by its first words, never its parameters.
 */
struct pg_result *mg_pg_query(struct pg_conn *conn, const char *sql, int nparams,
                              const char *const *params, mg_error_t *error);

/*
 * mg_pg_query_params is mg_pg_query with binary parameters (lengths and
 * formats as PQexecParams takes them; NULL: all text) and results
 * (result_format 1).
 */
struct pg_result *mg_pg_query_params(struct pg_conn *conn, const char *sql, int nparams,
                                     const char *const *values, const int *lengths,
                                     const int *formats, int result_format, mg_error_t *error);

/*
 * mg_pg_text_array appends items (n strings) as a PostgreSQL text[]
 * literal, each element quoted: the value of one bound parameter
 * ($1::text[]), never SQL text.
 */
bool mg_pg_text_array(const char *const *items, size_t n, mg_buf_t *out, mg_error_t *error);

/* mg_pg_rollback ends an open transaction on conn (if any and conn is up); errors ignored. */
void mg_pg_rollback(struct pg_conn *conn);

/* How long a lost target may stay away before a reconnect gives up (a
 * restart, a failover behind HAProxy). */
#define MG_PG_RECONNECT_BUDGET_S 300.0

/*
 * mg_pg_lost tells whether error (from a statement on conn) means the
 * target went away rather than refused the statement: the connection is
 * gone, SQLSTATE class 08, 57P01-57P03 (shut down, crashed, starting up),
 * or 25006 (the node is read-only: no longer the primary).
 */
bool mg_pg_lost(struct pg_conn *conn, const mg_error_t *error);

/*
 * mg_pg_writable tells whether conn reached a node that takes writes
 * (error says why not): right after a failover a connection can still land
 * on the old primary, now read-only, and a reconnect that took it would
 * fail the next statement again with 25006.
 */
bool mg_pg_writable(struct pg_conn *conn, mg_error_t *error);

/*
 * mg_pg_reconnect closes *conn (if any) and connects again with backoff
 * (0.5 s doubling to 10 s) until it reaches a writable node, budget_s
 * passes, or *stop (may be NULL) reaches stop_at; then runs setup (may be
 * NULL) on the new connection. Logs "<module>.target_lost" with why, then
 * "<module>.target_back". On failure *conn is NULL and error says why.
 */
bool mg_pg_reconnect(struct pg_conn **conn, const char *conninfo, const char *setup,
                     const char *module, const char *why, double budget_s, const atomic_int *stop,
                     int stop_at, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Numbers for people
 * ------------------------------------------------------------------------ */

/* mg_format_bytes formats n as "1.2 GB" into buf and returns buf. */
const char *mg_format_bytes(int64_t n, char *buf, size_t bufsz);

/* mg_format_count formats n as "3.4M" into buf and returns buf. */
const char *mg_format_count(int64_t n, char *buf, size_t bufsz);

/* ------------------------------------------------------------------------
 * Command framework: a static tree of commands for each binary (docs/core.md).
 *
 * A command entry carries its options table, what it needs (opened by the
 * program's acquire hook before it runs, released after), its positional
 * arguments and its subcommands. The framework does --help, config loading
 * (defaults < file < env < flags), argument checks, signals, and prints the
 * final error once: "<program> <command>: <message>" on stderr. Lower
 * layers fill mg_error_t and never print it.
 * ------------------------------------------------------------------------ */

typedef struct mg_cli_command mg_cli_command_t;
typedef struct mg_cmd mg_cmd_t;
typedef struct mg_cmd_ctx mg_cmd_ctx_t;

/* A command that parses its own argv (argv[0] is its name). Returns an exit code. */
typedef int (*mg_cli_run_fn)(const mg_cli_command_t *command, int argc, char **argv);

/* A command entry that parses its own argv (before the framework; pgdaemon's today). */
struct mg_cli_command {
    const char *name;
    const char *summary; /* one line for the command list */
    const char *usage;   /* "[options] ARG" after "<program> <name> " */
    mg_cli_run_fn run;
};

/*
 * mg_cmd_main_fn is a framework command: options are loaded into ctx->opts
 * and what it needs is open. It returns an exit code; on failure it fills
 * error, which the framework prints once. An error left in error by a
 * failure the command recovered from is not printed when it returns
 * MG_EXIT_OK.
 */
typedef int (*mg_cmd_main_fn)(mg_cmd_ctx_t *ctx, mg_error_t *error);

/* mg_cmd_check_fn checks combinations of options (one option alone is the table's job). */
typedef bool (*mg_cmd_check_fn)(const void *opts, mg_error_t *error);

/* What a command needs before it runs; the program's acquire hook opens it. */
enum {
    MG_CMD_NEEDS_SOURCE = 1u << 0, /* the source (migrate: MongoDB, connected and checked) */
    MG_CMD_NEEDS_TARGET = 1u << 1, /* the target (migrate: PostgreSQL) */
    MG_CMD_NEEDS_STATE = 1u << 2,  /* the recorded state (migrate: _migrate, version checked) */
    MG_CMD_NEEDS_STORE = 1u << 3,  /* the cluster store (pgdaemon: etcd) */
    /* SIGINT/SIGTERM set ctx->stop (1, then 2 on a second signal) instead of ending the process */
    MG_CMD_SIGNALS = 1u << 8,
};

/* A framework command entry: a node of the static command tree. */
struct mg_cmd {
    const char *name;
    const char *summary;     /* one line for the command list */
    const char *usage;       /* "--source URI [options]" after "<program> <path> " */
    const char *description; /* the paragraph of --help */
    mg_cmd_main_fn main;     /* NULL: a group; argv[1] must name a subcommand */
    const mg_config_option_t *options;
    size_t noptions;
    size_t opts_size; /* sizeof the struct the options' offsets point into */
    unsigned needs;   /* MG_CMD_NEEDS_* | MG_CMD_SIGNALS */
    int min_args;     /* positional arguments after the options */
    int max_args;
    mg_cmd_check_fn check;
    const mg_cmd_t *const *subcommands; /* "cluster up": argv[1] picks one */
    size_t nsubcommands;
};

/* What a framework command receives. */
struct mg_cmd_ctx {
    const struct mg_cli *cli;
    const mg_cmd_t *command;
    const char *path; /* "sync", "cluster up" */
    void *opts;       /* command->opts_size bytes, filled from the options table */
    mg_config_t *config;
    char **args; /* positional arguments, borrowed from argv */
    int nargs;
    atomic_int stop; /* with MG_CMD_SIGNALS: 1 after SIGINT/SIGTERM, 2 after a second */
    void *resources; /* what the acquire hook opened for command->needs */
};

typedef struct mg_cli {
    const char *program;              /* "migrate" */
    const char *env_prefix;           /* "MIGRATE_": <PREFIX>LOG_LEVEL, <PREFIX>LOG_FORMAT */
    const char *description;          /* one line under the usage */
    const mg_cli_command_t *commands; /* commands that parse their own argv */
    size_t ncommands;
    const mg_cmd_t *const *cmds; /* framework commands (each defined in its own file) */
    size_t ncmds;
    /* Called by --version after the version line, to list linked libraries. */
    void (*print_version_details)(FILE *stream);
    /* Framework commands: open what command->needs names into ctx->resources;
     * release closes it (also after a failed acquire). */
    bool (*acquire)(mg_cmd_ctx_t *ctx, mg_error_t *error);
    void (*release)(mg_cmd_ctx_t *ctx);
} mg_cli_t;

/*
 * mg_cli_take_log_options removes --log-level LEVEL and --log-format FORMAT
 * (also the --opt=value forms) from anywhere in argv, applies them on top
 * of <env_prefix>LOG_LEVEL / <env_prefix>LOG_FORMAT, and configures the
 * logger. *argc is updated; argv stays NULL-terminated. On a bad value
 * nothing is changed and error (domain config) names the option.
 */
bool mg_cli_take_log_options(const char *program, const char *env_prefix, int *argc, char **argv,
                             mg_error_t *error);

/*
 * mg_cli_main dispatches argv: global --log-level/--log-format are taken
 * first (see mg_cli_take_log_options), then --help/-h and help [COMMAND] print help,
 * --version/-V and version print the version, otherwise argv[1] names a
 * command. Returns the exit code for main() to return.
 */
int mg_cli_main(const mg_cli_t *cli, int argc, char **argv);

/* mg_cli_print_help writes the program's usage and command list. */
void mg_cli_print_help(const mg_cli_t *cli, FILE *stream);

/*
 * mg_cmd_print_help writes a framework command's help: usage,
 * description, subcommands, options (with their defaults and environment
 * variables) and --config.
 */
void mg_cmd_print_help(const mg_cli_t *cli, const mg_cmd_t *command, const char *path,
                       FILE *stream);

/*
 * mg_cmd_option_string returns the value of the string option name of a
 * framework command (borrowed from ctx->opts), or NULL when the command
 * has no such option or it is unset: how an acquire hook finds "source".
 */
const char *mg_cmd_option_string(const mg_cmd_ctx_t *ctx, const char *name);

/* mg_cmd_stopping tells whether a stop was requested (ctx->stop > 0). */
bool mg_cmd_stopping(mg_cmd_ctx_t *ctx);

/* ------------------------------------------------------------------------
 * etcd v3 client over the JSON gateway (libcurl + yajl). Keys and values
 * travel base64-encoded, int64 values as strings, and fields holding their
 * default are omitted by etcd (a failed txn has no "succeeded"); the parsers
 * below accept all of that. One mg_etcd_t per thread.
 * ------------------------------------------------------------------------ */

/* Codes of MG_ERROR_DOMAIN_ETCD. */
enum {
    MG_ETCD_ERR_UNAVAILABLE = 1, /* no endpoint answered (connect, timeout) */
    MG_ETCD_ERR_PROTOCOL,        /* an answer that is not what the gateway sends */
    MG_ETCD_ERR_SERVER,          /* an error answer not listed below */
    MG_ETCD_ERR_NOSPACE,         /* NOSPACE alarm: database space exceeded */
    MG_ETCD_ERR_COMPACTED,       /* the requested revision was compacted */
    MG_ETCD_ERR_LEASE_NOT_FOUND, /* the lease expired or was revoked */
    MG_ETCD_ERR_STALE_MEMBER,    /* the member answered with an older raft term */
    MG_ETCD_ERR_AUTH,            /* authentication failed or is required */
};

typedef struct mg_etcd mg_etcd_t;

/* Connection options; every pointer is borrowed by mg_etcd_new only. */
typedef struct {
    const char *const *endpoints; /* "http://127.0.0.1:2379", tried in order */
    size_t nendpoints;
    const char *username; /* NULL: no authentication */
    const char *password;
    const char *ca_file; /* TLS: CA bundle, client certificate and key */
    const char *cert_file;
    const char *key_file;
    int64_t timeout_ms; /* per request; 0 means 5000 */
} mg_etcd_options_t;

/* The response header; etcd sends uint64 ids and int64 numbers as strings. */
typedef struct {
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t revision;
    int64_t raft_term;
} mg_etcd_header_t;

/* One key-value; key and value are malloc'd and NUL-terminated (not counted). */
typedef struct {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} mg_etcd_kv_t;

/* A range answer; free with mg_etcd_range_cleanup. */
typedef struct {
    mg_etcd_header_t header;
    mg_etcd_kv_t *kvs;
    size_t nkvs;
    int64_t count; /* keys in the range (also when count_only or limited) */
    bool more;
} mg_etcd_range_t;

/* mg_etcd_range_cleanup frees what a range answer owns; NULL ok. */
void mg_etcd_range_cleanup(mg_etcd_range_t *range);

/*
 * mg_etcd_new creates a client. Nothing is contacted until the first call;
 * with a username, the first call authenticates (/v3/auth/authenticate) and
 * later calls send the token. Returns NULL on bad options. Destroy with
 * mg_etcd_destroy (NULL ok).
 */
mg_etcd_t *mg_etcd_new(const mg_etcd_options_t *options, mg_error_t *error);
void mg_etcd_destroy(mg_etcd_t *etcd);

/*
 * mg_etcd_deadline_set bounds every request from now on by one deadline,
 * ms_from_now ahead (monotonic): each HTTP attempt gets at most the time
 * left, across endpoints and the auth retry, and a request with no time
 * left fails at once with MG_ETCD_ERR_UNAVAILABLE. A caller holding a
 * lease sets it to the time left on the lease, so a black-holed etcd with
 * several endpoints cannot keep it blocked past its lease.
 * mg_etcd_deadline_clear removes it (each request: timeout_ms per attempt).
 */
void mg_etcd_deadline_set(mg_etcd_t *etcd, int64_t ms_from_now);
void mg_etcd_deadline_clear(mg_etcd_t *etcd);

/*
 * mg_etcd_replaced says (once) whether the client accepted a lower raft
 * term because every endpoint answered from one: etcd was restored from a
 * backup or replaced. A single member behind the others stays skipped
 * (MG_ETCD_ERR_STALE_MEMBER). from_term/to_term (may be NULL) get the terms.
 */
bool mg_etcd_replaced(mg_etcd_t *etcd, int64_t *from_term, int64_t *to_term);

/*
 * mg_etcd_version probes GET /version and writes the server version
 * ("3.4.23") into server (size serversz). Fails with MG_ETCD_ERR_UNAVAILABLE
 * when no endpoint answers, MG_ETCD_ERR_PROTOCOL when it is not etcd.
 */
bool mg_etcd_version(mg_etcd_t *etcd, char *server, size_t serversz, mg_error_t *error);

/*
 * mg_etcd_range reads key (prefix false) or every key starting with key
 * (prefix true), sorted by key ascending, at most limit keys (0 = all);
 * count_only returns only out->count. out is filled only on success.
 */
bool mg_etcd_range(mg_etcd_t *etcd, const char *key, bool prefix, int64_t limit, bool count_only,
                   mg_etcd_range_t *out, mg_error_t *error);

/* mg_etcd_put stores value (len bytes) under key, attached to lease (0 = none). */
bool mg_etcd_put(mg_etcd_t *etcd, const char *key, const void *value, size_t len, int64_t lease,
                 int64_t *revision, mg_error_t *error);

/* mg_etcd_delete removes key (or the prefix); *deleted (may be NULL) gets the count. */
bool mg_etcd_delete(mg_etcd_t *etcd, const char *key, bool prefix, int64_t *deleted,
                    mg_error_t *error);

typedef enum {
    MG_ETCD_TARGET_VERSION = 0,
    MG_ETCD_TARGET_CREATE,
    MG_ETCD_TARGET_MOD,
    MG_ETCD_TARGET_VALUE,
} mg_etcd_target_t;

typedef enum {
    MG_ETCD_CMP_EQUAL = 0,
    MG_ETCD_CMP_GREATER,
    MG_ETCD_CMP_LESS,
    MG_ETCD_CMP_NOT_EQUAL,
} mg_etcd_cmp_t;

typedef struct mg_etcd_txn mg_etcd_txn_t;

/* A txn answer: succeeded, and the range answers of its get ops in order. */
typedef struct {
    mg_etcd_header_t header;
    bool succeeded;
    mg_etcd_range_t *ranges;
    size_t nranges;
} mg_etcd_txn_result_t;

/* mg_etcd_txn_result_cleanup frees what a txn answer owns; NULL ok. */
void mg_etcd_txn_result_cleanup(mg_etcd_txn_result_t *result);

/*
 * mg_etcd_txn_new starts an empty transaction (at most 16 compares and 16
 * ops per branch; more is MG_ERROR_CODE_LIMIT). Destroy with
 * mg_etcd_txn_destroy (NULL ok). Strings are copied.
 */
mg_etcd_txn_t *mg_etcd_txn_new(void);
void mg_etcd_txn_destroy(mg_etcd_txn_t *txn);

/* mg_etcd_txn_compare_int compares key's version, create or mod revision. */
bool mg_etcd_txn_compare_int(mg_etcd_txn_t *txn, const char *key, mg_etcd_target_t target,
                             mg_etcd_cmp_t cmp, int64_t value, mg_error_t *error);

/* mg_etcd_txn_compare_value compares key's value with value (len bytes). */
bool mg_etcd_txn_compare_value(mg_etcd_txn_t *txn, const char *key, mg_etcd_cmp_t cmp,
                               const void *value, size_t len, mg_error_t *error);

/* Ops of the success (on_success true) or failure branch. */
bool mg_etcd_txn_put(mg_etcd_txn_t *txn, bool on_success, const char *key, const void *value,
                     size_t len, int64_t lease, mg_error_t *error);
bool mg_etcd_txn_delete(mg_etcd_txn_t *txn, bool on_success, const char *key, bool prefix,
                        mg_error_t *error);
bool mg_etcd_txn_get(mg_etcd_txn_t *txn, bool on_success, const char *key, bool prefix,
                     mg_error_t *error);

/* mg_etcd_txn_commit runs txn; result (caller cleans up) is filled on success. */
bool mg_etcd_txn_commit(mg_etcd_t *etcd, const mg_etcd_txn_t *txn, mg_etcd_txn_result_t *result,
                        mg_error_t *error);

/* mg_etcd_lease_grant grants a lease of ttl_s seconds; *id and *granted_ttl set. */
bool mg_etcd_lease_grant(mg_etcd_t *etcd, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
                         mg_error_t *error);

/*
 * mg_etcd_lease_keepalive renews lease id once; *ttl (may be NULL) gets the
 * remaining TTL. An expired or revoked lease fails with
 * MG_ETCD_ERR_LEASE_NOT_FOUND.
 */
bool mg_etcd_lease_keepalive(mg_etcd_t *etcd, int64_t id, int64_t *ttl, mg_error_t *error);

/* mg_etcd_lease_revoke revokes lease id (its keys are deleted). */
bool mg_etcd_lease_revoke(mg_etcd_t *etcd, int64_t id, mg_error_t *error);

typedef enum {
    MG_ETCD_EVENT_PUT = 0,
    MG_ETCD_EVENT_DELETE,
} mg_etcd_event_type_t;

typedef struct {
    mg_etcd_event_type_t type;
    mg_etcd_kv_t kv; /* a DELETE carries key and mod_revision only */
} mg_etcd_event_t;

/* One watch message, as parsed by mg_etcd_parse_watch. */
typedef struct {
    mg_etcd_header_t header;
    bool created;
    bool canceled;
    int64_t compact_revision; /* > 0: history before it is gone */
    char cancel_reason[128];
    mg_etcd_event_t *events;
    size_t nevents;
} mg_etcd_watch_response_t;

void mg_etcd_watch_response_cleanup(mg_etcd_watch_response_t *response);

/*
 * mg_etcd_watch_fn receives events (borrowed, valid during the call) in
 * revision order. compact_revision > 0 says history up to it was compacted
 * and events in between are lost: re-read the state, the watch continues
 * at compact_revision. Return false to stop watching.
 */
typedef bool (*mg_etcd_watch_fn)(void *userdata, const mg_etcd_event_t *events, size_t nevents,
                                 int64_t compact_revision);

/*
 * mg_etcd_watch watches key (or the prefix) from start_revision (0 = now)
 * and calls fn until it returns false or timeout_ms passes (then it returns
 * true). When the server cancels the watch, compacts past it, or the
 * stream breaks, it reconnects from the revision after the last event seen.
 */
bool mg_etcd_watch(mg_etcd_t *etcd, const char *key, bool prefix, int64_t start_revision,
                   int64_t timeout_ms, mg_etcd_watch_fn fn, void *userdata, mg_error_t *error);

/*
 * Parsers of gateway answers, used by the client and exposed for unit tests
 * and fuzzing. Each fails with MG_ETCD_ERR_PROTOCOL on malformed input and
 * with the mapped code on a gateway error object ({"error":..,"code":..});
 * the "result" wrapper of streamed answers is accepted.
 */
bool mg_etcd_parse_range(const char *json, size_t len, mg_etcd_range_t *out, mg_error_t *error);
bool mg_etcd_parse_txn(const char *json, size_t len, mg_etcd_txn_result_t *out, mg_error_t *error);
bool mg_etcd_parse_lease(const char *json, size_t len, mg_etcd_header_t *header, int64_t *id,
                         int64_t *ttl, mg_error_t *error);
bool mg_etcd_parse_watch(const char *json, size_t len, mg_etcd_watch_response_t *out,
                         mg_error_t *error);
bool mg_etcd_parse_header_only(const char *json, size_t len, mg_etcd_header_t *header,
                               int64_t *deleted, mg_error_t *error);

/* ------------------------------------------------------------------------
 * HTTP endpoint: a small HTTP server on libmicrohttpd, bounded against slow,
 * idle and many clients (core/src/core_http.c).
 * ------------------------------------------------------------------------ */

typedef struct mg_http_server mg_http_server_t;
typedef struct mg_http_request mg_http_request_t;

/* A reply: handlers set status, content_type (static) and append to body. */
typedef struct {
    int status;
    const char *content_type;
    mg_buf_t body; /* capped at 1 MB */
} mg_http_reply_t;

/*
 * mg_http_options_t bounds a server (0 = the default). Beyond a bound the
 * connection open longest is closed, so a new one always gets in:
 * max_connections in all (128), max_per_client from one client address
 * (16), and every connection connection_timeout_ms after it was accepted
 * (5000), whatever it sends or fails to read. threads workers (2), each with
 * its own epoll set, serve requests.
 */
typedef struct {
    unsigned max_connections;
    unsigned max_per_client;
    unsigned threads;
    int64_t connection_timeout_ms;
} mg_http_options_t;

/* What a server has done to keep its bounds (mg_http_server_stats). */
typedef struct {
    uint64_t accepted;       /* connections accepted */
    uint64_t closed_total;   /* the oldest closed: more than max_connections */
    uint64_t closed_client;  /* a client's oldest closed: more than max_per_client */
    uint64_t closed_timeout; /* closed connection_timeout_ms after accept */
    uint64_t open;           /* open now */
} mg_http_stats_t;

/*
 * mg_http_handler_fn answers one request for path (no query string); it
 * runs on one of the server's threads, maybe on several at once. Methods
 * other than GET and HEAD never reach it (405): the endpoints are read-only.
 */
typedef void (*mg_http_handler_fn)(void *userdata, const char *path, const mg_http_request_t *req,
                                   mg_http_reply_t *reply);

/* mg_http_request_query returns the borrowed value of query argument name, or NULL. */
const char *mg_http_request_query(const mg_http_request_t *req, const char *name);
/* mg_http_request_server returns the server answering req (for mg_http_server_stats). */
mg_http_server_t *mg_http_request_server(const mg_http_request_t *req);

/*
 * mg_http_server_start listens on address:port (port 0 = any free port)
 * with options (NULL: the defaults) and serves requests from its threads.
 * Returns NULL with error when the address cannot be bound. Destroy with
 * mg_http_server_destroy (NULL ok), which waits for running handlers.
 * mg_http_server_new is mg_http_server_start with NULL options.
 */
mg_http_server_t *mg_http_server_start(const char *address, uint16_t port,
                                       const mg_http_options_t *options, mg_http_handler_fn handler,
                                       void *userdata, mg_error_t *error);
mg_http_server_t *mg_http_server_new(const char *address, uint16_t port, mg_http_handler_fn handler,
                                     void *userdata, mg_error_t *error);

/* mg_http_server_port returns the port actually bound. */
uint16_t mg_http_server_port(const mg_http_server_t *server);

/* mg_http_server_stats copies the server's counters into out. */
void mg_http_server_stats(mg_http_server_t *server, mg_http_stats_t *out);

void mg_http_server_destroy(mg_http_server_t *server);

#ifdef __cplusplus
}
#endif

#endif /* MG_CORE_H */
