/* The general-purpose allocators a user would pick instead of lacuna, as churn backends:
 * tcmalloc (gperftools), mimalloc and jemalloc, each loaded with dlopen(RTLD_LOCAL) in the child
 * process that runs its backend and called through its own entry points (tc_malloc, mi_malloc,
 * mallocx). RTLD_LOCAL keeps them out of the global symbol scope, so lacuna-bench's own malloc
 * stays glibc's and each allocator serves only its own backend's regions.
 *
 * CMake finds the libraries (tools/CMakeLists.txt) and passes their paths; a backend whose
 * library was not found, or does not load, is skipped with the reason. */
#define _GNU_SOURCE
#include "bench.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name, *path, *alloc, *free, *package;
} libs[] = {
#ifdef LACUNA_BENCH_TCMALLOC
    {"tcmalloc", LACUNA_BENCH_TCMALLOC, "tc_malloc", "tc_free", "libgoogle-perftools-dev"},
#else
    {"tcmalloc", NULL, NULL, NULL, "libgoogle-perftools-dev"},
#endif
#ifdef LACUNA_BENCH_MIMALLOC
    {"mimalloc", LACUNA_BENCH_MIMALLOC, "mi_malloc", "mi_free", "libmimalloc-dev"},
#else
    {"mimalloc", NULL, NULL, NULL, "libmimalloc-dev"},
#endif
#ifdef LACUNA_BENCH_JEMALLOC /* mallocx/dallocx: jemalloc's own API, present unprefixed or not */
    {"jemalloc", LACUNA_BENCH_JEMALLOC, "mallocx", "dallocx", "libjemalloc-dev"},
#else
    {"jemalloc", NULL, NULL, NULL, "libjemalloc-dev"},
#endif
};

/* "jemalloc-tcache" is jemalloc with its thread cache raised to hold the region size (by
 * default it caches sizes up to 32 KiB only, so 64 KiB regions go to the arena each time). */
static int lib_index(const char *backend)
{
    for (int i = 0; i < (int)(sizeof libs / sizeof libs[0]); i++)
        if (strncmp(backend, libs[i].name, strlen(libs[i].name)) == 0)
            return i;
    return -1;
}

bool peer_is_lib(const char *backend)
{
    return lib_index(backend) >= 0;
}

int peer_lib_open(const char *backend, size_t region, peer_lib *p, char *why, size_t len)
{
    int i = lib_index(backend);
    memset(p, 0, sizeof *p);
    if (i < 0 || libs[i].path == NULL) {
        snprintf(why, len,
                 "skipped: lib%s was not found when lacuna-bench was configured "
                 "(Debian: apt-get install %s, then re-run cmake)",
                 i < 0 ? backend : libs[i].name, i < 0 ? "?" : libs[i].package);
        return -1;
    }
    if (strcmp(backend, "jemalloc-tcache") == 0) {
        /* Read by jemalloc at its first call, in this child only. */
        char conf[64];
        snprintf(conf, sizeof conf, "tcache_max:%zu", region);
        setenv("MALLOC_CONF", conf, 1);
    }
    void *h = dlopen(libs[i].path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(why, len, "skipped: %s", dlerror());
        return -1;
    }
    /* POSIX's sanctioned object-to-function cast; jemalloc's calls take a flags argument */
    void *a = dlsym(h, libs[i].alloc), *f = dlsym(h, libs[i].free);
    if (strcmp(libs[i].alloc, "mallocx") == 0) {
        *(void **)&p->allocx = a;
        *(void **)&p->freex = f;
    } else {
        *(void **)&p->alloc = a;
        *(void **)&p->free = f;
    }
    if (a == NULL || f == NULL) {
        snprintf(why, len, "skipped: %s has no %s/%s", libs[i].path, libs[i].alloc, libs[i].free);
        return -1;
    }
    p->region = region;
    return 0;
}
