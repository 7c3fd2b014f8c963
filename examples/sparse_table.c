/* sparse_table: an open-addressing hash table over a 1 GiB lacuna_table, filled with 10,000 keys
 * and wiped, 1,000 rounds; the time per wipe against memset of the whole table.
 *
 * The point: a table sized for the worst case is mostly empty, and most of its pages were never
 * touched. lacuna_table_wipe zeroes only what was written since the last wipe: the 64-byte lines
 * marked here with lacuna_table_mark on every insert (the default), the marked pages whole
 * (LACUNA_TABLE_PAGES), or the pages the kernel saw written (LACUNA_TABLE_AUTO: no marks).
 *
 *   ./example_sparse_table [rounds] [keys]        (defaults 1000 and 10000; --help)
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include <lacuna.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TABLE_BYTES (1ull << 30)

typedef struct slot {
    uint64_t key; /* 0 = empty */
    uint64_t value;
} slot;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Insert with linear probing; marks the slot (a no-op for an automatic table). */
static void insert(lacuna_table *t, uint64_t key, uint64_t value)
{
    slot *s = lacuna_table_base(t);
    size_t mask = TABLE_BYTES / sizeof(slot) - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
        if (s[i].key == 0 || s[i].key == key) {
            s[i].key = key;
            s[i].value = value;
            lacuna_table_mark(t, &s[i], sizeof s[i]);
            return;
        }
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* rounds of: insert `keys` fresh keys, wipe. Returns the median wipe time in ms. */
static double run(unsigned flags, int rounds, int keys, const char *name, cli_progress *pr,
                  int part)
{
    lacuna_table *t;
    int err = lacuna_table_create(TABLE_BYTES, flags, &t);
    if (err) {
        fprintf(stderr, "lacuna_table_create: %s\n", strerror(err));
        exit(1);
    }
    static const char *const tracking[] = {"?", "manual marks", "kernel write tracking",
                                           "residency (no userfaultfd)"};
    double *ms = malloc((size_t)rounds * sizeof *ms);
    uint64_t next_key = 1;
    for (int r = 0; r < rounds; r++) {
        cli_progress_update(pr, (part + (double)r / rounds) / 3, "%s: round %d of %d", name, r,
                            rounds);
        for (int k = 0; k < keys; k++, next_key++)
            insert(t, next_key, next_key * 3);
        double a = now_ms();
        if ((err = lacuna_table_wipe(t)) != 0) {
            fprintf(stderr, "lacuna_table_wipe: %s\n", strerror(err));
            exit(1);
        }
        ms[r] = now_ms() - a;
    }
    /* The last wipe left no key behind. */
    const slot *s = lacuna_table_base(t);
    size_t mask = TABLE_BYTES / sizeof(slot) - 1;
    for (uint64_t k = next_key - (uint64_t)keys; k < next_key; k++)
        if (s[mix(k) & mask].key != 0) {
            fprintf(stderr, "key %llu survived the wipe\n", (unsigned long long)k);
            exit(1);
        }
    cli_progress_end(pr);
    qsort(ms, (size_t)rounds, sizeof *ms, cmp);
    double med = ms[rounds / 2];
    printf("%-32s %9.3f ms per wipe (median of %d; min %.3f, max %.3f)  [%s]\n", name, med, rounds,
           ms[0], ms[rounds - 1], tracking[lacuna_table_tracking(t) & 3]);
    free(ms);
    lacuna_table_destroy(t);
    return med;
}

int main(int argc, char **argv)
{
    size_t nrounds = 1000, nkeys = 10000;
    /* At most half the slots: linear probing needs empty slots to end its searches. */
    const cli_opt args[] = {
        {"rounds", CLI_COUNT, &nrounds, 1, 1000000, "rounds of insert + wipe", NULL},
        {"keys", CLI_COUNT, &nkeys, 1, TABLE_BYTES / sizeof(slot) / 2, "keys per round", NULL},
        {0}};
    cli_spec spec = {"example_sparse_table",
                     "A hash table over a 1 GiB lacuna_table: insert keys, wipe, repeat; each "
                     "wipe timed against memset.",
                     NULL, args, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    /* The memset baseline makes the whole table resident; each key may touch a page of its own. */
    double touched =
        (double)nkeys * 4096 < (double)TABLE_BYTES ? (double)nkeys * 4096 : (double)TABLE_BYTES;
    if ((rc = cli_check_memory(&spec, (double)TABLE_BYTES + touched,
                               "the 1 GiB table made resident, and the pages the keys touch")) != 0)
        return rc;
    int rounds = (int)nrounds, keys = (int)nkeys;
    cli_progress pr;
    cli_progress_start(&pr);
    printf("open-addressing hash table, 1 GiB (%llu slots), %d keys per round, %d rounds\n\n",
           (unsigned long long)(TABLE_BYTES / sizeof(slot)), keys, rounds);

    /* The naive way: memset the whole table. Once it has been memset it is all resident, so
     * later memsets run at memory bandwidth; the first one faults in every page. */
    lacuna_table *t;
    if (lacuna_table_create(TABLE_BYTES, 0, &t) != 0)
        return 1;
    void *base = lacuna_table_base(t);
    double a = now_ms();
    memset(base, 0, TABLE_BYTES);
    double first = now_ms() - a;
    double ms[5];
    for (int i = 0; i < 5; i++) {
        a = now_ms();
        memset(base, 0, TABLE_BYTES);
        ms[i] = now_ms() - a;
    }
    qsort(ms, 5, sizeof *ms, cmp);
    double memset_ms = ms[2];
    lacuna_table_destroy(t);
    printf("%-32s %9.3f ms per wipe (median of 5; the first, faulting it all in: %.1f ms)\n",
           "memset of the whole table", memset_ms, first);

    double manual = run(0, rounds, keys, "lacuna_table_wipe, manual", &pr, 0);
    double pages = run(LACUNA_TABLE_PAGES, rounds, keys, "lacuna_table_wipe, PAGES", &pr, 1);
    double autom = run(LACUNA_TABLE_AUTO, rounds, keys, "lacuna_table_wipe, AUTO", &pr, 2);
    printf("\nfaster than memset: manual (lines) %.0fx, manual with LACUNA_TABLE_PAGES %.0fx, "
           "automatic %.0fx\n",
           memset_ms / manual, memset_ms / pages, memset_ms / autom);
    return 0;
}
