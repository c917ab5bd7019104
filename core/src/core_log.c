/*
 * core/src/core_log.c - JSON-lines logger (text on a TTY), built with yajl.
 *
 * Every line: timestamp (RFC 3339 UTC, ms), pid, level, program, module,
 * optional event, message, then structured fields. Strings are redacted and
 * made valid UTF-8 before they are written. When stderr is the systemd
 * journal (JOURNAL_STREAM names its device and inode) each line starts with
 * the syslog priority "<N>" so journald records the level.
 */
#include "mg/core.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

static struct {
    pthread_mutex_t lock;
    const char *program;
    mg_log_level_t min_level;
    mg_log_format_t format;
    FILE *stream; /* NULL = stderr */
    bool text;    /* resolved from format + isatty */
    bool journal; /* prefix lines with <priority> */
} logger = {PTHREAD_MUTEX_INITIALIZER, "mg", MG_LOG_INFO, MG_LOG_FORMAT_AUTO, NULL, false, false};

static const char *const level_names[] = {"debug", "info", "notice", "warning", "error", "fatal"};
/* syslog priorities: debug 7, info 6, notice 5, warning 4, err 3, crit 2 */
static const int level_syslog[] = {7, 6, 5, 4, 3, 2};

static FILE *
out_stream(void)
{
    return logger.stream != NULL ? logger.stream : stderr;
}

/* stream_is_journal checks JOURNAL_STREAM ("dev:inode") against the stream. */
static bool
stream_is_journal(FILE *stream)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(fileno(stream), &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* resolve_locked recomputes text/journal from format and stream. */
static void
resolve_locked(void)
{
    FILE *s = out_stream();

    logger.journal = stream_is_journal(s);
    switch (logger.format) {
    case MG_LOG_FORMAT_TEXT:
        logger.text = true;
        break;
    case MG_LOG_FORMAT_JSON:
        logger.text = false;
        break;
    case MG_LOG_FORMAT_AUTO:
        logger.text = isatty(fileno(s)) && !logger.journal;
        break;
    }
}

void
mg_log_init(const char *program, mg_log_level_t min_level, mg_log_format_t format)
{
    pthread_mutex_lock(&logger.lock);
    logger.program = program != NULL ? program : "mg";
    __atomic_store_n(&logger.min_level, min_level, __ATOMIC_RELAXED);
    logger.format = format;
    resolve_locked();
    pthread_mutex_unlock(&logger.lock);
}

const char *
mg_log_program(void)
{
    const char *program;

    pthread_mutex_lock(&logger.lock);
    program = logger.program != NULL ? logger.program : "mg";
    pthread_mutex_unlock(&logger.lock);
    return program;
}

void
mg_log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&logger.lock);
    logger.stream = stream;
    resolve_locked();
    pthread_mutex_unlock(&logger.lock);
}

void
mg_log_set_level(mg_log_level_t min_level)
{
    __atomic_store_n(&logger.min_level, min_level, __ATOMIC_RELAXED);
}

bool
mg_log_enabled(mg_log_level_t level)
{
    return level >= __atomic_load_n(&logger.min_level, __ATOMIC_RELAXED);
}

const char *
mg_log_level_name(mg_log_level_t level)
{
    if ((int)level < 0 || level > MG_LOG_FATAL)
        return "unknown";
    return level_names[level];
}

bool
mg_log_level_parse(const char *text, mg_log_level_t *level)
{
    if (text == NULL)
        return false;
    for (int i = 0; i <= MG_LOG_FATAL; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *level = (mg_log_level_t)i;
            return true;
        }
    }
    if (strcmp(text, "warn") == 0) {
        *level = MG_LOG_WARNING;
        return true;
    }
    return false;
}

bool
mg_log_format_parse(const char *text, mg_log_format_t *format)
{
    if (text == NULL)
        return false;
    if (strcmp(text, "auto") == 0)
        *format = MG_LOG_FORMAT_AUTO;
    else if (strcmp(text, "json") == 0)
        *format = MG_LOG_FORMAT_JSON;
    else if (strcmp(text, "text") == 0)
        *format = MG_LOG_FORMAT_TEXT;
    else
        return false;
    return true;
}

/*
 * utf8_sanitize copies src to a malloc'd string in which every byte that is
 * not part of a well-formed UTF-8 sequence becomes U+FFFD. Caller frees.
 */
static char *
utf8_sanitize(const char *src)
{
    size_t n = strlen(src);
    char *out = malloc(n * 3 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t len = mg_utf8_char_len((const uint8_t *)src + i, n - i);

        if (len > 0) {
            memcpy(out + o, src + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        }
    }
    out[o] = '\0';
    return out;
}

/* clean_string returns a redacted, UTF-8-valid malloc'd copy (caller frees). */
static char *
clean_string(const char *s)
{
    char *redacted = mg_redact_dup(s != NULL ? s : "");
    char *valid;

    if (redacted == NULL)
        return NULL;
    valid = utf8_sanitize(redacted);
    free(redacted);
    return valid;
}

static void
format_timestamp(char *buf, size_t bufsz)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, bufsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
}

static void
gen_clean_str(yajl_gen g, const char *s)
{
    char *c = clean_string(s);

    mg_json_str(g, c != NULL ? c : "(out of memory)");
    free(c);
}

/* gen_field writes one structured field's value. */
static void
gen_field_value(yajl_gen g, const mg_log_field_t *f)
{
    char num[64];

    switch (f->type) {
    case MG_LOG_FIELD_STR:
        if (f->v.s == NULL)
            yajl_gen_null(g);
        else
            gen_clean_str(g, f->v.s);
        break;
    case MG_LOG_FIELD_INT:
        yajl_gen_integer(g, (long long)f->v.i);
        break;
    case MG_LOG_FIELD_UINT:
        snprintf(num, sizeof(num), "%llu", (unsigned long long)f->v.u);
        yajl_gen_number(g, num, strlen(num));
        break;
    case MG_LOG_FIELD_DOUBLE:
        if (isfinite(f->v.d)) {
            snprintf(num, sizeof(num), "%.17g", f->v.d);
            yajl_gen_number(g, num, strlen(num));
        } else {
            mg_json_str(g, isnan(f->v.d) ? "NaN" : (f->v.d > 0 ? "Infinity" : "-Infinity"));
        }
        break;
    case MG_LOG_FIELD_BOOL:
        yajl_gen_bool(g, f->v.b);
        break;
    }
}

/* write_json builds the JSON line with yajl_gen; returns malloc'd text. */
static char *
build_json(const char *ts, mg_log_level_t level, const char *module, const char *event,
           const mg_log_field_t *fields, size_t nfields, const char *message)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    char *line;

    if (g == NULL)
        return NULL;
    yajl_gen_map_open(g);
    mg_json_str(g, "timestamp");
    mg_json_str(g, ts);
    mg_json_str(g, "pid");
    yajl_gen_integer(g, (long long)getpid());
    mg_json_str(g, "level");
    mg_json_str(g, mg_log_level_name(level));
    mg_json_str(g, "program");
    gen_clean_str(g, logger.program);
    mg_json_str(g, "module");
    gen_clean_str(g, module != NULL ? module : "core");
    if (event != NULL) {
        mg_json_str(g, "event");
        gen_clean_str(g, event);
    }
    mg_json_str(g, "message");
    gen_clean_str(g, message);
    for (size_t i = 0; i < nfields; i++) {
        gen_clean_str(g, fields[i].key != NULL ? fields[i].key : "field");
        gen_field_value(g, &fields[i]);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    line = malloc(len + 1);
    if (line != NULL) {
        memcpy(line, buf, len);
        line[len] = '\0';
    }
    yajl_gen_free(g);
    return line;
}

/* build_text renders the human-readable form; returns malloc'd text. */
static char *
build_text(const char *ts, mg_log_level_t level, const char *module, const char *event,
           const mg_log_field_t *fields, size_t nfields, const char *message)
{
    char *msg = clean_string(message);
    char *line = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&line, &cap);

    if (m == NULL) {
        free(msg);
        return NULL;
    }
    fprintf(m, "%s %-7s %s: %s", ts, mg_log_level_name(level), module ? module : "core",
            msg ? msg : "");
    if (event != NULL)
        fprintf(m, " event=%s", event);
    for (size_t i = 0; i < nfields; i++) {
        const mg_log_field_t *f = &fields[i];
        char *v;

        fprintf(m, " %s=", f->key ? f->key : "field");
        switch (f->type) {
        case MG_LOG_FIELD_STR:
            v = clean_string(f->v.s ? f->v.s : "null");
            fprintf(m, strpbrk(v ? v : "", " \t") ? "\"%s\"" : "%s", v ? v : "");
            free(v);
            break;
        case MG_LOG_FIELD_INT:
            fprintf(m, "%lld", (long long)f->v.i);
            break;
        case MG_LOG_FIELD_UINT:
            fprintf(m, "%llu", (unsigned long long)f->v.u);
            break;
        case MG_LOG_FIELD_DOUBLE:
            fprintf(m, "%g", f->v.d);
            break;
        case MG_LOG_FIELD_BOOL:
            fprintf(m, "%s", f->v.b ? "true" : "false");
            break;
        }
    }
    fclose(m);
    free(msg);
    return line;
}

void
mg_log_writev(mg_log_level_t level, const char *module, const char *event,
              const mg_log_field_t *fields, size_t nfields, const char *fmt, va_list ap)
{
    char small[1024];
    char *message = small;
    char ts[40];
    char *line;
    va_list copy;
    int n;

    if (!mg_log_enabled(level))
        return;
    va_copy(copy, ap);
    n = vsnprintf(small, sizeof(small), fmt, copy);
    va_end(copy);
    if (n >= (int)sizeof(small)) {
        message = malloc((size_t)n + 1);
        if (message == NULL) {
            message = small; /* cut between characters rather than lost */
            mg_utf8_trim(small);
        } else {
            vsnprintf(message, (size_t)n + 1, fmt, ap);
        }
    }
    format_timestamp(ts, sizeof(ts));

    pthread_mutex_lock(&logger.lock);
    if (logger.text)
        line = build_text(ts, level, module, event, fields, nfields, message);
    else
        line = build_json(ts, level, module, event, fields, nfields, message);
    FILE *s = out_stream();
    if (logger.journal)
        fprintf(s, "<%d>", level_syslog[level]);
    fputs(line != NULL ? line : "{\"level\":\"error\",\"message\":\"log: out of memory\"}", s);
    fputc('\n', s);
    fflush(s);
    pthread_mutex_unlock(&logger.lock);

    free(line);
    if (message != small)
        free(message);
}

void
mg_log_write(mg_log_level_t level, const char *module, const char *event,
             const mg_log_field_t *fields, size_t nfields, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    mg_log_writev(level, module, event, fields, nfields, fmt, ap);
    va_end(ap);
}

void
mg_log_error(mg_log_level_t level, const char *module, const mg_error_t *error)
{
    if (error == NULL || !mg_log_enabled(level))
        return;
    if (error->sqlstate[0] != '\0') {
        mg_log_write(level, module, NULL,
                     MG_LOG_FIELDS(MG_LOG_STR("domain", mg_error_domain_name(error->domain)),
                                   MG_LOG_INT("err_code", error->code),
                                   MG_LOG_STR("sqlstate", error->sqlstate)),
                     "%s", error->message);
    } else {
        mg_log_write(level, module, NULL,
                     MG_LOG_FIELDS(MG_LOG_STR("domain", mg_error_domain_name(error->domain)),
                                   MG_LOG_INT("err_code", error->code)),
                     "%s", error->message);
    }
}
