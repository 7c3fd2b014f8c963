/* A consumer of <lacuna.h> in C89 (and, through consumer_cxx98.cpp, C++98): the headers must
 * compile with -std=c89 -pedantic -Werror, inline table marking included. Runs a pool round trip
 * (punch, resident pages, deferred free, free by top), a table mark and the version helpers. */
#include <lacuna.h>

#include <stdio.h>

int main(void)
{
    lacuna_pool_config c;
    lacuna_pool *p;
    lacuna_table *t;
    char *r;
    size_t pages;
    c.region_size = 65536;
    c.capacity = 4;
    c.guard_size = 0;
    c.guard = LACUNA_GUARD_DEFAULT;
    c.release = LACUNA_RELEASE_DEFAULT;
    c.cache = 0;
    c.keep_resident = 0;
    c.decay_ms = 0;
    c.flags = 0;
    if (lacuna_pool_create(&c, &p) != 0)
        return 1;
    r = (char *)lacuna_alloc(p);
    if (r == NULL)
        return 2;
    r[0] = 1;
    if (lacuna_resident(p, r, &pages) != 0 || lacuna_punch(p, r, r + 4096) != 0)
        return 7;
    if (lacuna_free_deferred(p, r) != 0 || lacuna_flush(p) != 0)
        return 3;
    r = (char *)lacuna_alloc(p);
    if (r == NULL || lacuna_free_top(p, r + c.region_size) != 0)
        return 8;
    lacuna_pool_destroy(p);
    if (lacuna_table_create(1 << 20, 0, &t) != 0)
        return 4;
    lacuna_table_mark(t, lacuna_table_base(t), 100);
    if (lacuna_table_wipe(t) != 0)
        return 5;
    lacuna_table_destroy(t);
    if (lacuna_version_number() != LACUNA_VERSION_NUMBER)
        return 6;
    printf("ok: lacuna %s, %s\n", lacuna_version(), lacuna_release_name(LACUNA_RELEASE_NEVER));
    return 0;
}
