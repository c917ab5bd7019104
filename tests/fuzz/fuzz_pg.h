/*
 * tests/fuzz/fuzz_pg.h - checks that SQL a fuzz target generated is SQL a
 * real PostgreSQL accepts. With MG_FUZZ_PG set (a libpq conninfo or URI of
 * a scratch database) the target's first input connects and runs setup;
 * fuzz_pg_check then runs each statement (with its text parameters) in a
 * transaction that is rolled back, and aborts - a finding - when PostgreSQL
 * refuses it for any reason but a statement timeout or a resource limit.
 * Without MG_FUZZ_PG the checks are skipped (the fuzzers still look for
 * crashes and their own invariants).
 */
#ifndef MG_TESTS_FUZZ_PG_H
#define MG_TESTS_FUZZ_PG_H

#include <stdbool.h>

/*
 * fuzz_pg_ready connects once (MG_FUZZ_PG) and runs setup (one or more
 * statements; may be NULL); false when MG_FUZZ_PG is unset. A failed
 * connection or setup aborts.
 */
bool fuzz_pg_ready(const char *setup);

/*
 * fuzz_pg_check runs sql with params (text; NULL entries are SQL NULL) and
 * aborts, printing what, the statement, its parameters and PostgreSQL's
 * error, when it is refused. what names the generator (e.g. "shadow sql").
 */
void fuzz_pg_check(const char *what, const char *sql, int nparams, const char *const *params);

/*
 * fuzz_pg_check_all runs the n statements in one transaction (rolled
 * back), each as fuzz_pg_check does; a refusal with SQLSTATE also_ok (may
 * be NULL: none) ends the transaction without a finding (a unique index
 * the sample rows do not fit).
 */
void fuzz_pg_check_all(const char *what, const char *const *sql, int n, const char *also_ok);

#endif
