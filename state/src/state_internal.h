/*
 * state/src/state_internal.h - what the state module's files share: the
 * handle, and the one way they run SQL (a constant text in which "@" is the
 * quoted state schema, values as bound parameters).
 */
#ifndef MG_STATE_INTERNAL_H
#define MG_STATE_INTERNAL_H

#include "mg/state.h"

#include <libpq-fe.h>

struct mg_state {
    PGconn *conn;        /* borrowed */
    char *name;          /* the schema's name */
    char *quoted;        /* its quoted identifier, as mg_schema_quote_ident writes it */
    mg_buf_t sql;        /* the statement being run */
    char *cutover_token; /* the cutover this handle owns (NULL: none); state_cutover.c */
};

/*
 * mg_state__query runs tmpl ("@" = the quoted state schema) with n text
 * parameters (NULL = SQL NULL); returns the result (caller PQclear) or NULL
 * with error set.
 */
PGresult *mg_state__query(mg_state_t *st, const char *tmpl, int n, const char *const *values,
                          mg_error_t *error);

/* mg_state__query_bin is mg_state__query with binary parameters and results (PQexecParams). */
PGresult *mg_state__query_bin(mg_state_t *st, const char *tmpl, int n, const char *const *values,
                              const int *lengths, const int *formats, int result_format,
                              mg_error_t *error);

/* mg_state__exec runs tmpl like mg_state__query and drops the result. */
bool mg_state__exec(mg_state_t *st, const char *tmpl, int n, const char *const *values,
                    mg_error_t *error);

/* mg_state__each_row calls fn with the first three columns of each row of res; clears res. */
bool mg_state__each_row(PGresult *res, mg_state_doc_fn fn, void *ctx, mg_error_t *error);

/* Numbers as parameter text: buf must hold 32 bytes; returns buf. */
const char *mg_state__i64(char *buf, int64_t v);
const char *mg_state__u32(char *buf, uint32_t v);

/* mg_state__dup returns a malloc'd copy of s (NULL for NULL or out of memory: *failed set). */
char *mg_state__dup(const char *s, bool *failed);

/* mg_state__oom sets "out of memory" and returns false. */
bool mg_state__oom(mg_error_t *error);

/*
 * mg_state__read_rows fills out from res (cleared): the text columns text_cols
 * name (up to three; -1 none) go to a, b, c, the number columns num_cols to
 * n1..n3. res NULL: false (error already set).
 */
bool mg_state__read_rows(PGresult *res, const int text_cols[3], const int num_cols[3],
                         mg_state_rows_t *out, mg_error_t *error);

/* mg_state__copy writes the value of row r, column c (or "" when NULL) into out. */
void mg_state__copy(const PGresult *res, int r, int c, char *out, size_t outsz);

/* mg_state__int64 reads row r, column c as a number (0 when NULL). */
int64_t mg_state__int64(const PGresult *res, int r, int c);

/* DDL appended to version 1 by mg_state_ddl (NULL-terminated, "@" as everywhere). */
extern const char *const mg_state__follow_ddl[];
extern const char *const mg_state__fence_ddl[];

#endif /* MG_STATE_INTERNAL_H */
