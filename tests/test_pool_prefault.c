/* A pool told to prefault (the fiber runtime's stack pools: a fiber's first frame is written at
 * spawn) faults in the top of the page-less regions a thread cache's refill takes, in one
 * process_madvise(MADV_POPULATE_WRITE): the pages are resident before their first touch, nothing
 * below them is, and without batching (or LACUNA_FORCE_FALLBACK=prefault) nothing is done. */
#define _GNU_SOURCE
#include "internal.h" /* lac_pool_set_prefault, lac_os_forced */
#include "lacuna.h"
#include "test.h"

#include <stdbool.h>

#define KIB    1024u
#define REGION (16 * KIB)
#define PG     4096u
#define REFILL (LAC_TC_MAX / 2) /* regions a thread cache's refill takes */

static bool prefault_works(void)
{
    lacuna_features f;
    lacuna_features_get(&f);
    return f.batch_release && !lac_os_forced("prefault") && !lt_under_valgrind();
}

/* Take REFILL regions (one refill) and check, before touching any, that exactly their top pages
 * are resident when `want`. Leaves them live in r. */
static void check_refill(lacuna_pool *p, char **r, bool want)
{
    for (size_t i = 0; i < REFILL; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
    }
    for (size_t i = 0; i < REFILL; i++) {
        CHECK_EQ(lt_resident_pages(r[i] + REGION - PG, PG), want ? 1 : 0);
        CHECK_EQ(lt_resident_pages(r[i], REGION - PG), 0);
    }
}

TEST(refill_prefaults_region_tops)
{
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = REGION});
    lac_pool_set_prefault(p, 1); /* rounded up to a page */
    char *r[REFILL];
    long rss0 = lt_rss_kib();
    check_refill(p, r, prefault_works()); /* fresh slots, guarded in the same refill */
    CHECK(lt_rss_kib() - rss0 < (long)(REFILL * PG / KIB) + 256); /* the tops, not more */
    for (size_t i = 0; i < REFILL; i++) {
        CHECK(lt_guarded(r[i], PG));
        r[i][REGION - 1] = 1;
    }
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0); /* released: page-less, on the clean stack */
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(lt_resident_pages(r[i], REGION), 0);
    check_refill(p, r, prefault_works());
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(r[i][REGION - 1], 0); /* prefaulted pages are zero pages */
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_destroy(p);
}

TEST(without_prefault_nothing_is_touched)
{
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = REGION});
    char *r[REFILL];
    check_refill(p, r, false);
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_destroy(p);
}

TEST(fiber_stack_pools_prefault)
{
    lacuna_pool *p = lacuna_fiber_pool_for(REGION);
    CHECK(p != NULL);
    char *r[REFILL];
    check_refill(p, r, prefault_works());
    for (size_t i = 0; i < REFILL; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
}
