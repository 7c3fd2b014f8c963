// lacuna/boost_fiber.hpp — Boost.Fiber fibers on lacuna stacks. Boost.Fiber takes a Boost.Context
// StackAllocator, so the allocator of lacuna/boost_context.hpp serves it as is; this header names
// it for Boost.Fiber users and says what differs:
//
//   lacuna_pool_config cfg = {};
//   cfg.region_size = 64 * 1024;          // Boost.Fiber's default stack size
//   lacuna_pool *pool;
//   lacuna_pool_create(&cfg, &pool);
//   lacuna::boost_fiber_stacks stacks{pool};
//   boost::fibers::fiber f{std::allocator_arg, stacks, [] { boost::this_fiber::yield(); }};
//   f.join();
//
// - Boost.Fiber places each fiber's control block (its context, ~1 KiB) at the top of the stack,
//   inside the region: lacuna_resident of a parked fiber's stack is therefore at least 1 page, and
//   a lacuna_punch must keep that page (keep_from <= the context's address).
// - A finished fiber's stack is given back by whoever drops the last reference to it (the joiner,
//   or the scheduler's dispatcher for a detached fiber), never on the finished fiber's own stack:
//   lacuna_free_top is enough, lacuna_free_deferred is not needed.
// - The pool must outlive every fiber made with it. Stacks may be allocated on one thread and
//   freed on another (fiber migration, work stealing): lacuna pools are thread-safe.
// - Unlike boost::fibers::protected_fixedsize_stack (an mmap + mprotect per stack, 2 VMAs each:
//   the process runs out of vm.max_map_count near 32,000 live fibers), lacuna's guards split no
//   VMA; unlike pooled_fixedsize_stack, stacks are guarded and their pages go back to the kernel.
//   tools/boost_fiber_bench.cpp (lacuna-bench boost-skynet) measures all three.
//
// Header-only; include after <boost/fiber/...>.
#ifndef LACUNA_BOOST_FIBER_HPP
#define LACUNA_BOOST_FIBER_HPP

#include <lacuna/boost_context.hpp>

namespace lacuna
{

using boost_fiber_stacks = boost_stack_allocator;

} // namespace lacuna

#endif
