/* The feature probes say what the kernel (or emulator) really does, and a pool uses what they
 * found. Run natively, forced to the fallbacks (LACUNA_FORCE_FALLBACK=all: every probe must say
 * no), and under qemu-user on AArch64 (tests/aarch64_qemu.sh), which accepts MADV_GUARD_INSTALL
 * and ignores it and has no process_madvise: there the script sets
 * LACUNA_TEST_EXPECT_FEATURES=guard_marker=0,batch_release=0 and this test holds the probes to it,
 * so the fallback paths are the ones exercised on a second architecture. */
#define _GNU_SOURCE
#include "test.h"

#include <unistd.h>

static void print_features(const lacuna_features *f)
{
    fprintf(stderr,
            "features: guard_marker %d, batch_release %d, pagemap_scan %d, madv_free %d, page "
            "%zu, max_map_count %zu, mprotect budget %zu, forced '%s'\n",
            f->guard_marker, f->batch_release, f->pagemap_scan, f->madv_free, f->page_size,
            f->max_map_count, f->mprotect_guard_budget, f->forced);
}

/* LACUNA_TEST_EXPECT_FEATURES="name=0|1,...": each named probe must have found that. */
TEST(probes_find_what_the_environment_expects)
{
    lacuna_features f;
    lacuna_features_get(&f);
    print_features(&f);
    const char *want = getenv("LACUNA_TEST_EXPECT_FEATURES");
    if (want == NULL || *want == '\0')
        return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", want);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        CHECK(eq != NULL);
        *eq = '\0';
        int v = atoi(eq + 1), got = -1;
        if (strcmp(item, "guard_marker") == 0)
            got = f.guard_marker;
        else if (strcmp(item, "batch_release") == 0)
            got = f.batch_release;
        else if (strcmp(item, "pagemap_scan") == 0)
            got = f.pagemap_scan;
        else if (strcmp(item, "madv_free") == 0)
            got = f.madv_free;
        if (got != v) {
            fprintf(stderr, "probe %s found %d, expected %d\n", item, got, v);
            exit(1);
        }
    }
}

TEST(forced_fallbacks_are_reported_off)
{
    lacuna_features f;
    lacuna_features_get(&f);
    const char *forced = getenv("LACUNA_FORCE_FALLBACK");
    if (forced == NULL || strcmp(forced, "all") != 0)
        return;
    CHECK_EQ(f.guard_marker, 0);
    CHECK_EQ(f.batch_release, 0);
    CHECK_EQ(f.pagemap_scan, 0);
    CHECK_EQ(strcmp(f.forced, "all"), 0);
}

TEST(geometry_is_the_systems)
{
    lacuna_features f;
    lacuna_features_get(&f);
    CHECK_EQ(f.page_size, (size_t)sysconf(_SC_PAGESIZE));
    CHECK(f.max_map_count > 0);
    CHECK_EQ(f.mprotect_guard_budget, f.max_map_count / 4 / 2); /* a quarter, 2 VMAs a guard */
}

/* A default pool guards with what the probe found, and the guard holds (a write() from it fails
 * with EFAULT), on every path: markers, or the mprotect fallback. */
TEST(a_default_pool_guards_with_what_was_probed)
{
    lacuna_features f;
    lacuna_features_get(&f);
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 << 10, .capacity = 8});
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    lacuna_stats st = lt_stats(p);
    fprintf(stderr, "guard in force: %s\n", lacuna_guard_name(st.guard));
    CHECK_EQ(st.guard, f.guard_marker ? LACUNA_GUARD_MARKER : LACUNA_GUARD_MPROTECT);
    CHECK(lt_guarded(r, st.guard_size));
    r[0] = 1, r[(64 << 10) - 1] = 2; /* the region itself is usable */
    CHECK_EQ(lacuna_free(p, r), 0);
    lacuna_pool_destroy(p);
}
