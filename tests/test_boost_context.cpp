// Boost.Context fibers on lacuna stacks, through include/lacuna/boost_context.hpp: they run on pool
// regions, pass values back and forth, and give their stacks back.
#include <boost/context/fiber.hpp>
#include <lacuna/boost_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "test_cxx.hpp"

namespace ctx = boost::context;

int main()
{
    lacuna_pool_config cfg = {};
    cfg.region_size = 64 * 1024;
    cfg.capacity = 64;
    lacuna_pool *pool = nullptr;
    CHECK(lacuna_pool_create(&cfg, &pool) == 0);

    long sum = 0;
    for (int round = 0; round < 1000; round++) { // far more fibers than the pool holds at once
        long on_region = -2;
        int steps = 0;
        ctx::fiber f{std::allocator_arg, lacuna::boost_stack_allocator{pool},
                     [&](ctx::fiber &&main) {
                         int local = 0;
                         on_region = lacuna_region_index(pool, &local);
                         for (int i = 0; i < 3; i++) {
                             steps++;
                             main = std::move(main).resume();
                         }
                         return std::move(main);
                     }};
        while (f)
            f = std::move(f).resume();
        CHECK(steps == 3);
        CHECK(on_region >= 0); // the fiber's locals lived in a lacuna region
        sum += steps;
    }
    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    CHECK(st.live == 0);
    CHECK(st.allocs == 1000 && st.frees == 1000);
    CHECK(st.used <= 64);
    lacuna_pool_destroy(pool);
    std::printf("ok: 1000 Boost.Context fibers on lacuna stacks (%ld resumes)\n", sum);
    return 0;
}
