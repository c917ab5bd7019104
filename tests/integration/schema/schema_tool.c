/*
 * tests/integration/schema/schema_tool.c - drives the schema module from the
 * pytest suite, one item per line on stdin/stdout:
 *
 *   mg_schema_tool corpus                 prints "hex<TAB>file: description" per valid case
 *   mg_schema_tool random N SEED          prints N random documents as hex
 *   mg_schema_tool render FIDELITY        hex BSON in, JSON out ("ERR <message>" on failure)
 *   mg_schema_tool parse FIDELITY         JSON in, hex of the canonical form of its BSON out
 *   mg_schema_tool canon FIDELITY         hex BSON in, hex of its canonical form out
 *   mg_schema_tool helpers SCHEMA         prints the SQL helper functions' DDL for SCHEMA
 */
#include "mg/schema.h"

#include "bson_corpus_valid.h"
#include "schema_random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* print_hex writes the bytes of b as lower-case hex and a newline. */
static void
print_hex(const bson_t *b)
{
    const uint8_t *d = bson_get_data(b);
    uint32_t i;

    for (i = 0; i < b->len; i++)
        printf("%02x", d[i]);
    putchar('\n');
}

/* nibble returns the value of one hex digit, or -1. */
static int
nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* from_hex decodes a hex line into a new bson_t; NULL when it is not BSON. */
static bson_t *
from_hex(const char *hex, size_t n)
{
    uint8_t *bytes = malloc(n / 2 + 1);
    bson_t *b;
    size_t i;

    for (i = 0; i + 1 < n; i += 2) {
        /* not sscanf: it measures the whole remaining string on every call */
        int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);

        if (hi < 0 || lo < 0) {
            free(bytes);
            return NULL;
        }
        bytes[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    b = bson_new_from_data(bytes, n / 2);
    free(bytes);
    return b;
}

/* print_err prints an error on one line: a newline in a quoted key becomes a space. */
static void
print_err(const char *message)
{
    fputs("ERR ", stdout);
    for (const char *p = message; *p; p++)
        putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
    putchar('\n');
}

/* print_canon prints the canonical form of b, or an error line. */
static void
print_canon(const bson_t *b, mg_schema_fidelity_t fidelity)
{
    mg_error_t error;
    bson_t *c = mg_schema_doc_canonicalize(b, fidelity, &error);

    if (c == NULL) {
        print_err(error.message);
        return;
    }
    print_hex(c);
    bson_destroy(c);
}

int
main(int argc, char **argv)
{
    mg_schema_fidelity_t fidelity = MG_SCHEMA_FIDELITY_RELAXED;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    mg_buf_t buf;

    if (argc < 2) {
        fprintf(stderr, "usage: mg_schema_tool corpus|random N SEED|render|parse|canon FIDELITY\n");
        return 2;
    }
    if (strcmp(argv[1], "corpus") == 0) {
        size_t i;

        for (i = 0; i < sizeof(corpus_valid) / sizeof(corpus_valid[0]); i++)
            printf("%s\t%s: %s\n", corpus_valid[i].canonical_bson_hex, corpus_valid[i].file,
                   corpus_valid[i].description);
        return 0;
    }
    if (strcmp(argv[1], "helpers") == 0 && argc == 3) {
        mg_error_t error;

        mg_buf_init(&buf, 1 << 20);
        if (!mg_schema_sql_helpers_ddl(argv[2], &buf, &error)) {
            fprintf(stderr, "mg_schema_tool: %s\n", error.message);
            return 1;
        }
        fputs(buf.data, stdout);
        mg_buf_cleanup(&buf);
        return 0;
    }
    if (strcmp(argv[1], "random") == 0 && argc == 4) {
        long count = strtol(argv[2], NULL, 10), i;

        rs = strtoull(argv[3], NULL, 10) | 1;
        for (i = 0; i < count; i++) {
            bson_t *d = random_doc();

            print_hex(d);
            bson_destroy(d);
        }
        return 0;
    }
    if (argc != 3 || !mg_schema_fidelity_parse(argv[2], &fidelity)) {
        fprintf(stderr, "mg_schema_tool: bad arguments\n");
        return 2;
    }
    mg_buf_init(&buf, 64u << 20);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        mg_error_t error;

        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (strcmp(argv[1], "parse") == 0) {
            bson_t *b = mg_schema_json_parse(line, (size_t)n, &error);

            if (b == NULL) {
                print_err(error.message);
                continue;
            }
            print_canon(b, fidelity);
            bson_destroy(b);
            continue;
        }
        bson_t *b = from_hex(line, (size_t)n);

        if (b == NULL) {
            printf("ERR not BSON\n");
            continue;
        }
        if (strcmp(argv[1], "render") == 0) {
            mg_buf_reset(&buf);
            if (mg_schema_doc_render(b, fidelity, &buf, NULL, &error))
                printf("%s\n", buf.data);
            else
                print_err(error.message);
        } else {
            print_canon(b, fidelity);
        }
        bson_destroy(b);
        fflush(stdout);
    }
    mg_buf_cleanup(&buf);
    free(line);
    return 0;
}
