/* The smallest useful lacuna program: a pool of guarded 64 KiB stacks, some taken and given
 * back, and the numbers that show the pages went back to the kernel.
 *
 *   make && cmake --install build --prefix $HOME/.local       # or: sudo make install
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
 *   cc stacks.c $(pkg-config --cflags --libs lacuna) -Wl,-rpath,$HOME/.local/lib && ./a.out
 *
 * (In this repository it is also built as build/examples/example_stacks.)
 */
#include <lacuna.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* No options: this file builds alone against an installed lacuna (tests/install_test.sh), so
     * it does not take the shared parser (tools/cli.c) the other examples use. */
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "%susage: %s   (no options: holds and frees 1,000 "
                "guarded 64 KiB stacks and prints what went back)\n",
                help ? "" : "unexpected argument; ", argv[0]);
        return help ? 0 : 2;
    }
    lacuna_pool_config config = {.region_size = 64 * 1024, .capacity = 10000};
    lacuna_pool *pool;
    int err = lacuna_pool_create(&config, &pool);
    if (err) {
        fprintf(stderr, "lacuna_pool_create: %s\n", strerror(err));
        return 1;
    }
    lacuna_overflow_handler_install(); /* an overflow now prints which region, then SIGSEGV */

    static char *stacks[1000];
    for (int i = 0; i < 1000; i++) {
        stacks[i] = lacuna_alloc(pool);
        if (stacks[i] == NULL) {
            perror("lacuna_alloc");
            return 1;
        }
        memset(stacks[i] + 64 * 1024 - 8192, 1, 8192); /* a stack uses its top pages */
    }
    for (int i = 0; i < 1000; i++)
        lacuna_free(pool, stacks[i]);
    lacuna_trim(pool); /* or wait decay_ms: warm regions are released on the next pool call */

    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    printf("live %zu, warm %zu, released %zu regions in %llu syscalls, guards: %s\n", st.live,
           st.warm, (size_t)st.released_regions, (unsigned long long)st.release_calls,
           st.guard == LACUNA_GUARD_MARKER     ? "kernel markers"
           : st.guard == LACUNA_GUARD_MPROTECT ? "mprotect"
                                               : "none");
    lacuna_pool_destroy(pool);
    return 0;
}
