/* lacuna_version and the names of enum values: the version is CMake's project version (so the
 * header's LACUNA_VERSION_* and CMakeLists.txt cannot drift apart), every enumerator has its own
 * spelling as its name, and a value that is no enumerator gets a "(not a ...)" string, never NULL
 * nor a neighbour's name. */
#include "test.h"

#include <limits.h>

/* name_fn(value) must be the enumerator's own spelling. */
#define CHECK_NAME(name_fn, value) CHECK_STR(name_fn(value), #value)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *lt_got = (got);                                                                \
        if (lt_got == NULL || strcmp(lt_got, (want)) != 0) {                                       \
            fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got,        \
                    lt_got ? lt_got : "(null)", (want));                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

TEST(version_is_the_projects)
{
    char want[32];
    CHECK_STR(lacuna_version(), LACUNA_PROJECT_VERSION); /* from CMake's project() */
    CHECK_EQ(lacuna_version_number(), LACUNA_VERSION_NUMBER);
    snprintf(want, sizeof want, "%d.%d.%d", lacuna_version_number() / 10000,
             lacuna_version_number() / 100 % 100, lacuna_version_number() % 100);
    CHECK_STR(lacuna_version(), want);
}

TEST(every_enumerator_has_its_own_name)
{
    CHECK_NAME(lacuna_guard_name, LACUNA_GUARD_DEFAULT);
    CHECK_NAME(lacuna_guard_name, LACUNA_GUARD_MARKER);
    CHECK_NAME(lacuna_guard_name, LACUNA_GUARD_MPROTECT);
    CHECK_NAME(lacuna_guard_name, LACUNA_GUARD_NONE);
    CHECK_NAME(lacuna_release_name, LACUNA_RELEASE_DEFAULT);
    CHECK_NAME(lacuna_release_name, LACUNA_RELEASE_DONTNEED);
    CHECK_NAME(lacuna_release_name, LACUNA_RELEASE_FREE);
    CHECK_NAME(lacuna_release_name, LACUNA_RELEASE_NEVER);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_AUTO);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_MEMSET);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_DONTNEED);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_REMAP);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_MINCORE);
    CHECK_NAME(lacuna_wipe_strategy_name, LACUNA_WIPE_PAGEMAP);
    CHECK_NAME(lacuna_tracking_name, LACUNA_TRACK_MANUAL);
    CHECK_NAME(lacuna_tracking_name, LACUNA_TRACK_WRITTEN);
    CHECK_NAME(lacuna_tracking_name, LACUNA_TRACK_RESIDENT);
}

TEST(a_value_that_is_no_enumerator_is_said_so)
{
    static const int bad[] = {-1, INT_MIN, INT_MAX, 1000};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STR(lacuna_guard_name((lacuna_guard)bad[i]), "(not a lacuna_guard)");
        CHECK_STR(lacuna_release_name((lacuna_release)bad[i]), "(not a lacuna_release)");
        CHECK_STR(lacuna_wipe_strategy_name((lacuna_wipe_strategy)bad[i]),
                  "(not a lacuna_wipe_strategy)");
        CHECK_STR(lacuna_tracking_name((lacuna_tracking)bad[i]), "(not a lacuna_tracking)");
    }
    /* one past the last enumerator, and tracking's 0 (its values start at 1) */
    CHECK_STR(lacuna_guard_name((lacuna_guard)(LACUNA_GUARD_NONE + 1)), "(not a lacuna_guard)");
    CHECK_STR(lacuna_release_name((lacuna_release)(LACUNA_RELEASE_NEVER + 1)),
              "(not a lacuna_release)");
    CHECK_STR(lacuna_wipe_strategy_name((lacuna_wipe_strategy)(LACUNA_WIPE_PAGEMAP + 1)),
              "(not a lacuna_wipe_strategy)");
    CHECK_STR(lacuna_tracking_name((lacuna_tracking)0), "(not a lacuna_tracking)");
}

/* What a log line would print: the modes a pool has in force after probing are named, never
 * DEFAULT (which only asks for the best available). */
TEST(a_pools_modes_in_force_are_named)
{
    lacuna_pool_config c = {.region_size = 64 << 10, .capacity = 4};
    lacuna_pool *p;
    lacuna_stats st;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    lacuna_pool_stats(p, &st);
    CHECK(strncmp(lacuna_guard_name(st.guard), "LACUNA_GUARD_", 13) == 0);
    CHECK(strcmp(lacuna_guard_name(st.guard), "LACUNA_GUARD_DEFAULT") != 0);
    CHECK_STR(lacuna_release_name(st.release), "LACUNA_RELEASE_DONTNEED");
    lacuna_pool_destroy(p);
}
