/* names.c — lacuna_version and the names of the public enums' values, for logs.
 *
 * Owns: nothing but constant strings. The version is the header's (include/lacuna.h) as this
 * library was compiled with it; tests/test_names.c checks that it is CMake's project version too,
 * so the two cannot drift apart. Each name table is indexed by the enum value and must list every
 * enumerator in order: the test walks each enum from its first value to its last and compares
 * with the header's spelling.
 */
#include "internal.h"

#define LAC_STR2(x) #x
#define LAC_STR(x)  LAC_STR2(x)

const char *lacuna_version(void)
{
    return LAC_STR(LACUNA_VERSION_MAJOR) "." LAC_STR(LACUNA_VERSION_MINOR) "." LAC_STR(
        LACUNA_VERSION_PATCH);
}

int lacuna_version_number(void)
{
    return LACUNA_VERSION_NUMBER;
}

/* names[v - first], or `none` for a value outside the table (an enum may hold any int). */
static const char *name_of(int v, int first, const char *const *names, size_t n, const char *none)
{
    if (v < first || (size_t)(v - first) >= n)
        return none;
    return names[v - first];
}

#define LAC_NAME(v, first, names, none)                                                            \
    name_of((int)(v), (first), (names), sizeof(names) / sizeof((names)[0]), (none))

const char *lacuna_guard_name(lacuna_guard guard)
{
    static const char *const names[] = {"LACUNA_GUARD_DEFAULT", "LACUNA_GUARD_MARKER",
                                        "LACUNA_GUARD_MPROTECT", "LACUNA_GUARD_NONE"};
    return LAC_NAME(guard, LACUNA_GUARD_DEFAULT, names, "(not a lacuna_guard)");
}

const char *lacuna_release_name(lacuna_release release)
{
    static const char *const names[] = {"LACUNA_RELEASE_DEFAULT", "LACUNA_RELEASE_DONTNEED",
                                        "LACUNA_RELEASE_FREE", "LACUNA_RELEASE_NEVER"};
    return LAC_NAME(release, LACUNA_RELEASE_DEFAULT, names, "(not a lacuna_release)");
}

const char *lacuna_wipe_strategy_name(lacuna_wipe_strategy strategy)
{
    static const char *const names[] = {"LACUNA_WIPE_AUTO",     "LACUNA_WIPE_MEMSET",
                                        "LACUNA_WIPE_DONTNEED", "LACUNA_WIPE_REMAP",
                                        "LACUNA_WIPE_MINCORE",  "LACUNA_WIPE_PAGEMAP"};
    return LAC_NAME(strategy, LACUNA_WIPE_AUTO, names, "(not a lacuna_wipe_strategy)");
}

const char *lacuna_tracking_name(lacuna_tracking tracking)
{
    static const char *const names[] = {"LACUNA_TRACK_MANUAL", "LACUNA_TRACK_WRITTEN",
                                        "LACUNA_TRACK_RESIDENT"};
    return LAC_NAME(tracking, LACUNA_TRACK_MANUAL, names, "(not a lacuna_tracking)");
}
