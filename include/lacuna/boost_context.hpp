// lacuna/boost_context.hpp — a Boost.Context StackAllocator whose stacks come from a lacuna pool:
// guarded (a kernel guard marker below every stack, no VMA split), and given back to the kernel
// when freed, unlike boost::context::pooled_fixedsize_stack (which never returns memory and has no
// guard) or protected_fixedsize_stack (an mmap + mprotect per stack: 2 VMAs each).
//
//   lacuna_pool_config cfg = {};
//   cfg.region_size = 64 * 1024;
//   lacuna_pool *pool;
//   lacuna_pool_create(&cfg, &pool);
//   boost::context::fiber f{std::allocator_arg, lacuna::boost_stack_allocator{pool},
//                           [](boost::context::fiber &&main) { return std::move(main); }};
//
// Header-only; include after <boost/context/...>. The pool must outlive every fiber made with it.
#ifndef LACUNA_BOOST_CONTEXT_HPP
#define LACUNA_BOOST_CONTEXT_HPP

#include <boost/context/stack_context.hpp>
#include <lacuna.h>

#include <cerrno>
#include <new>

namespace lacuna
{

class boost_stack_allocator
{
  public:
    explicit boost_stack_allocator(lacuna_pool *pool) noexcept : pool_(pool)
    {
        lacuna_stats st;
        lacuna_pool_stats(pool, &st);
        size_ = st.region_size;
    }

    // A stack from the pool; throws std::bad_alloc when the pool is full (errno ENOMEM).
    boost::context::stack_context allocate()
    {
        void *region = lacuna_alloc(pool_);
        if (region == nullptr)
            throw std::bad_alloc();
        boost::context::stack_context sctx;
        sctx.size = size_;
        sctx.sp = static_cast<char *>(region) + size_; // stacks grow down from the top
        return sctx;
    }

    // Boost keeps a stack by its top: lacuna_free_top takes exactly that. Boost calls this from
    // another context than the finished one (its ontop exit), so no deferral is needed.
    void deallocate(boost::context::stack_context &sctx) noexcept
    {
        (void)lacuna_free_top(pool_, sctx.sp);
    }

  private:
    lacuna_pool *pool_;
    std::size_t size_;
};

} // namespace lacuna

#endif
