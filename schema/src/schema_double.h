/*
 * schema/src/schema_double.h - the double formatter's reference
 * implementation (printf + strtod), kept for the cases the shortest-digits
 * formatter hands back to it and for the unit test that compares the two.
 */
#ifndef MG_SCHEMA_DOUBLE_H
#define MG_SCHEMA_DOUBLE_H

#include <stddef.h>

/*
 * mg_schema__double_format_reference writes finite x (not -0.0) exactly as
 * mg_schema__double_format did before it computed its digits itself:
 * integers below 2^53 as "N.0", then the fewest fraction digits (up to 22)
 * that read back, else the first of 15, 16, 17 significant digits
 * ("%.*e", correctly rounded) that reads back. Same contract as
 * mg_schema__double_format (out: MG_SCHEMA_DOUBLE_MAX bytes, NUL-terminated;
 * returns the length). About 1 us per value when it needs printf.
 */
size_t mg_schema__double_format_reference(double x, char *out);

#endif
