# lacuna-gdb.py — a debugger view of lacuna's fibers, for gdb with Python 3 (tested with gdb 13).
#
# Load it with `source /path/to/lacuna-gdb.py`, or let gdb auto-load it: `make install` puts a copy
# beside gdb's auto-load tree as share/gdb/auto-load/<libdir>/liblacuna.so.<version>-gdb.py
# (docs/debugging.md). Commands:
#
#   lacuna fibers [STATE|NAME]
#                            (also: info lacuna-fibers) every live fiber, or those in that state
#                            or of that name: id, name, state, what it waits on, stack use
#   lacuna bt ID|NAME|all [full]
#                            the backtrace of a fiber from its saved context (parked or ready);
#                            of the thread running it, for a running one; `full` adds locals
#
# How it finds fibers: through `lacuna_debug_info`, a constant descriptor the library exports
# (src/internal.h, lac_debug_info; not an API): the address of the control-block table and its
# length, the offset of every lac_fiber field read here, the chunk geometry and the enum values.
# No DWARF is needed, so it works on a release or stripped liblacuna (the program's own frames
# still need the program's symbols to be named), and on core files (gcore, or a kernel dump).
#
# How it recovers a parked fiber's context: lac_ctx_switch (src/arch/switch_*.S) left the
# callee-saved registers and the resume address on the fiber's stack at its saved sp. A Python
# frame unwinder, switched on for one backtrace, claims the selected thread's innermost frame and
# says that its caller is the fiber's context (pc, sp, frame pointer and callee-saved registers as
# saved); gdb's own unwinder (the DWARF CFI of the program and the library) does the rest. Nothing
# in the inferior is written, so it works the same on a live process and on a core file.
import struct

import gdb

try:
    import gdb.unwinder as _gdb_unwinder
except ImportError:  # gdb older than 7.10
    _gdb_unwinder = None

DESC_SYMBOL = "lacuna_debug_info"
DESC_VERSION = 1
# The descriptor's 32-bit words after its 8-byte magic, in order (src/internal.h); the two
# addresses follow, 8-aligned. New fields only ever come after them.
_WORDS = (
    "version size fiber_size chunk_shift chunks name_max "
    "off_sp off_stack off_stack_size off_state off_wait off_name off_gen off_idx "
    "off_deadline off_io off_worker off_sched_idx off_io_fd off_io_events "
    "f_free f_ready f_running f_parked f_done w_none w_timer w_io"
).split()

# What lac_ctx_switch saves at a parked fiber's sp (src/arch/switch_*.S): register -> offset, the
# resume address, and how far above sp the caller's stack pointer was.
_CONTEXTS = {
    "x86-64": {
        "regs": {"rbp": 48, "rbx": 40, "r12": 32, "r13": 24, "r14": 16, "r15": 8},
        "pc_reg": "rip", "pc_off": 56, "sp_reg": "rsp", "frame": 64,
    },
    "aarch64": {
        "regs": dict([("x%d" % (19 + i), 8 * i) for i in range(10)] + [("x29", 80), ("x30", 88)]),
        "pc_reg": "pc", "pc_off": 88, "sp_reg": "sp", "frame": 160,
    },
}

_EPOLLIN, _EPOLLOUT = 0x1, 0x4
_NO_STACK = ("gdb's gcore leaves out each MiB of a mapping with a guard marker in it; see "
             "docs/debugging.md")


class LacunaError(gdb.GdbError):
    pass


class _KeepSelection(object):
    """Restores the selected thread and frame: listing and unwinding fibers switch threads and
    flush gdb's frame cache."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        try:  # by level: a gdb.Frame kept across a flush of the frame cache may name another one
            self.level = gdb.selected_frame().level()
        except (gdb.error, AttributeError):
            self.level = 0
        return self

    def __exit__(self, *exc):
        try:
            if self.thread is not None and self.thread.is_valid():
                self.thread.switch()
                frame = gdb.newest_frame()
                for _ in range(self.level):
                    frame = frame.older() or frame
                frame.select()
        except gdb.error:
            pass
        return False


def _read(addr, n):
    return bytes(gdb.selected_inferior().read_memory(addr, n))


def _u64(addr):
    return struct.unpack("<Q", _read(addr, 8))[0]


def _arch_name():
    try:
        name = gdb.selected_inferior().architecture().name()
    except (AttributeError, gdb.error):
        name = gdb.newest_frame().architecture().name()
    if "x86-64" in name:
        return "x86-64"
    if "aarch64" in name:
        return "aarch64"
    return name


def _is_native():
    """Whether the inferior is a process on this machine (not a core file, not remote), so that
    its CLOCK_MONOTONIC is ours."""
    inf = gdb.selected_inferior()
    conn = getattr(inf, "connection", None)
    if conn is not None:
        return conn.type == "native"
    info = gdb.execute("info target", to_string=True)
    return "core dump" not in info and "Remote" not in info


class Descriptor(object):
    """lacuna_debug_info as read from the inferior."""

    def __init__(self):
        try:
            addr = int(gdb.parse_and_eval("(unsigned long)&%s" % DESC_SYMBOL))
        except gdb.error:
            raise LacunaError(
                "lacuna: no symbol %s: the program does not use lacuna's fibers, or its "
                "symbols are stripped (a static link keeps it only in .symtab)" % DESC_SYMBOL)
        try:
            raw = _read(addr, 8 + 4 * len(_WORDS))
        except gdb.MemoryError:
            raise LacunaError("lacuna: cannot read %s (no process or core file?)" % DESC_SYMBOL)
        if raw[:6] != b"lacuna":
            raise LacunaError("lacuna: %s at 0x%x has no magic" % (DESC_SYMBOL, addr))
        words = struct.unpack("<%dI" % len(_WORDS), raw[8:])
        for k, v in zip(_WORDS, words):
            setattr(self, k, v)
        if self.version != DESC_VERSION:
            raise LacunaError("lacuna: descriptor version %d, this script knows %d: use the script "
                              "installed with this library" % (self.version, DESC_VERSION))
        ptrs = (8 + 4 * len(_WORDS) + 7) & ~7
        self.table = _u64(addr + ptrs)
        self.table_n = _u64(addr + ptrs + 8)
        self.states = {self.f_free: "free", self.f_ready: "ready", self.f_running: "running",
                       self.f_parked: "parked", self.f_done: "done"}


class Fiber(object):
    """One control block in use (generation odd)."""

    def __init__(self, d, raw, base):
        def u(off, fmt):
            return struct.unpack_from(fmt, raw, base + off)[0]
        self.gen = u(d.off_gen, "<I")
        self.idx = u(d.off_idx, "<I")
        self.id = self.gen << 32 | self.idx  # lacuna_fiber_id() and the lacuna_fiber * handle
        self.sp = u(d.off_sp, "<Q")
        self.stack = u(d.off_stack, "<Q")
        self.stack_size = u(d.off_stack_size, "<Q")
        self.state_value = u(d.off_state, "<B")
        self.state = d.states.get(self.state_value, "state#%d" % self.state_value)
        self.wait = u(d.off_wait, "<B")
        self.deadline = u(d.off_deadline, "<Q")
        self.io = u(d.off_io, "<Q")
        self.worker = u(d.off_worker, "<Q")
        name = raw[base + d.off_name:base + d.off_name + d.name_max]
        self.name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.thread = None  # the gdb thread running it, for a running fiber
        self.off_sched_idx = d.off_sched_idx

    def worker_index(self):
        """The index of the worker that runs it or ran it last, or None."""
        if not self.worker or self.state == "done":  # its worker lives while it does
            return None
        try:
            return struct.unpack("<I", _read(self.worker + self.off_sched_idx, 4))[0]
        except gdb.MemoryError:
            return None


def fibers(d=None):
    """Every control block in use, in table order."""
    d = d or Descriptor()
    n = struct.unpack("<I", _read(d.table_n, 4))[0]
    per = 1 << d.chunk_shift
    out = []
    for c in range(min((n + per - 1) >> d.chunk_shift, d.chunks)):
        chunk = _u64(d.table + 8 * c)
        if chunk == 0:
            continue
        count = min(per, n - c * per)
        raw = _read(chunk, count * d.fiber_size)
        for i in range(count):
            base = i * d.fiber_size
            gen = struct.unpack_from("<I", raw, base + d.off_gen)[0]
            if c * per + i == 0 or not gen & 1:
                continue
            out.append(Fiber(d, raw, base))
    _find_running(out)
    return out


def _find_running(fs):
    """Attach to each running fiber the thread whose stack pointer is inside its stack."""
    running = [f for f in fs if f.state == "running" and f.stack]
    if not running:
        return
    sp_reg = _CONTEXTS.get(_arch_name(), {}).get("sp_reg", "sp")
    with _KeepSelection():
        for t in gdb.selected_inferior().threads():
            t.switch()
            try:
                sp = int(gdb.newest_frame().read_register(sp_reg)) & (2**64 - 1)
            except gdb.error:
                continue
            for f in running:
                if f.stack <= sp < f.stack + f.stack_size:
                    f.thread = t
                    f.thread_sp = sp


# ---- backtraces ------------------------------------------------------------------------------


class _FiberUnwinder(_gdb_unwinder.Unwinder if _gdb_unwinder else object):
    """While `regs` is set: the innermost frame's caller is the context in `regs`."""

    def __init__(self):
        super(_FiberUnwinder, self).__init__("lacuna-fiber")
        self.regs = None
        self.frame_sp = 0

    def __call__(self, pending):
        if self.regs is None:
            return None
        level = pending.level() if hasattr(pending, "level") else 0
        if level != 0:
            return None
        # The claimed frame's id takes the fiber's saved sp, not the thread's: gdb stops a
        # backtrace whose caller frame lies below (inner to) the frame it was unwound from,
        # which the fiber's stack may well do to the thread's (both are pool regions).
        ctx = _CONTEXTS[_arch_name()]
        pc = pending.read_register(ctx["pc_reg"])
        sp = gdb.Value(self.frame_sp).cast(pending.read_register(ctx["sp_reg"]).type)
        info = pending.create_unwind_info(_FrameIdType(sp, pc))
        for reg, value in self.regs.items():
            info.add_saved_register(reg, gdb.Value(value).cast(pending.read_register(reg).type))
        if not hasattr(pending, "level"):
            self.regs = None  # no level(): claim only the first frame asked about
        return info


class _FrameId(object):
    """A frame id for create_unwind_info (gdb.unwinder.FrameId exists only from gdb 14)."""

    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


_FrameIdType = getattr(_gdb_unwinder, "FrameId", _FrameId)
_unwinder = None


def _install_unwinder():
    global _unwinder
    if _unwinder is None:
        if _gdb_unwinder is None:
            raise LacunaError("lacuna: this gdb has no Python frame unwinders (gdb >= 7.10)")
        _unwinder = _FiberUnwinder()
        _gdb_unwinder.register_unwinder(None, _unwinder, replace=True)
    return _unwinder


def saved_context(f):
    """The registers lac_ctx_switch saved for a fiber that is not running: {name: value}."""
    ctx = _CONTEXTS.get(_arch_name())
    if ctx is None:
        raise LacunaError("lacuna: no context layout for architecture %s" % _arch_name())
    raw = _read(f.sp, ctx["frame"])
    regs = dict((r, struct.unpack_from("<Q", raw, off)[0]) for r, off in ctx["regs"].items())
    regs[ctx["pc_reg"]] = struct.unpack_from("<Q", raw, ctx["pc_off"])[0]
    regs[ctx["sp_reg"]] = f.sp + ctx["frame"]
    return regs


def fiber_frames(f, fn):
    """Call fn(frames) with the gdb frames of fiber f, innermost first, and return its result.
    The frames are valid only inside fn."""
    if f.state == "running":
        if f.thread is None:
            raise LacunaError("lacuna: fiber %#x runs, but no thread's sp is in its stack" % f.id)
        with _KeepSelection():
            f.thread.switch()
            return fn(list(_walk(gdb.newest_frame())))
    if not f.stack or not f.sp:
        raise LacunaError("lacuna: fiber %#x (%s) has no saved context" % (f.id, f.state))
    u = _install_unwinder()
    regs = saved_context(f)
    pc = regs[_CONTEXTS[_arch_name()]["pc_reg"]]
    if pc == 0:
        raise LacunaError("lacuna: fiber %#x: its stack is not in this core (%s)" % (f.id, _NO_STACK))
    keep = _KeepSelection().__enter__()
    u.regs = regs
    u.frame_sp = f.sp
    gdb.invalidate_cached_frames()
    try:
        frames = list(_walk(gdb.newest_frame().older()))
        if not frames or frames[0].pc() != pc:
            raise LacunaError("lacuna: could not unwind fiber %#x from its saved context (pc %#x)"
                              % (f.id, pc))
        return fn(frames)
    finally:
        u.regs = None
        gdb.invalidate_cached_frames()
        keep.__exit__()


def _walk(frame, limit=256):
    n = 0
    while frame is not None and n < limit:
        yield frame
        n += 1
        try:
            frame = frame.older()
        except gdb.error:
            break


def _frame_line(i, fr):
    pc = fr.pc()
    name = fr.name() or "??"
    where = ""
    try:
        sal = fr.find_sal()
        if sal.symtab is not None:
            where = " at %s:%d" % (sal.symtab.filename, sal.line)
    except gdb.error:
        pass
    if not where:
        lib = gdb.solib_name(pc)
        if lib:
            where = " from %s" % lib
    return "#%-2d 0x%016x in %s ()%s" % (i, pc, name, where)


def _frame_locals(fr):
    out, seen = [], set()
    try:
        block = fr.block()
    except RuntimeError:
        return out
    while block is not None and not block.is_global and not block.is_static:
        for sym in block:
            if (sym.is_variable or sym.is_argument) and sym.name not in seen:
                seen.add(sym.name)  # an inlined function's block repeats its outer names
                try:
                    val = str(sym.value(fr))
                except (gdb.error, RuntimeError) as e:
                    val = "<%s>" % e
                out.append("        %s = %s" % (sym.name, val))
        if block.function is not None:
            break
        block = block.superblock
    return out


def backtrace_lines(f, full=False):
    def fmt(frames):
        lines = []
        for i, fr in enumerate(frames):
            lines.append(_frame_line(i, fr))
            if full:
                lines.extend(_frame_locals(fr))
        return lines
    return fiber_frames(f, fmt)


# Where a parked fiber with no timer or fd waits, told by its innermost library frames below the
# scheduler's: a public call (lacuna_*), or an internal function a public call ends in by a tail
# call (so that the public frame is gone). Internal names come from the library's symbols: a
# stripped library shows "??" there.
_SCHED_FRAMES = ("switch_to", "lac_sched_park", "lac_ctx_switch", "block", "block_as",
                 "lac_park_block")
_PLACES = {"wait_in": "channel", "lock_slow": "mutex_lock", "sem_take": "sem_wait",
           "join_wait": "join", "cond_wait": "cond_wait", "waitgroup_wait": "waitgroup_wait",
           "select_slow": "select", "select_live": "select"}


def _first_arg(fr):
    try:
        for sym in fr.block():
            if sym.is_argument:
                val = sym.value(fr)
                return "" if val.is_optimized_out else " %s" % val
    except (gdb.error, RuntimeError):
        pass
    return ""


def _channel_dir(fr):
    """recv or send, for a fiber in chan.c's wait_in (needs the library's debug info)."""
    try:
        c = fr.read_var("c")
        q = fr.read_var("q")
        return " recv" if int(q) == int(c["recvq"].address) else " send"
    except (gdb.error, RuntimeError, ValueError):
        return ""


def _wait_object(f):
    """What a parked fiber waits in, from its innermost library frames: e.g. "mutex_lock 0x..."
    or "channel recv 0x..." (the object when the library's debug info gives it)."""
    def find(frames):
        for fr in frames[:8]:
            name = fr.name() or "??"
            if name in _SCHED_FRAMES:
                continue
            if name.startswith("lacuna_"):
                return name[len("lacuna_"):] + _first_arg(fr)
            if name == "wait_in":
                return "channel" + _channel_dir(fr) + _first_arg(fr)
            if name in _PLACES:
                return _PLACES[name] + _first_arg(fr)
            return "wake-up (in %s)" % name
        return None
    try:
        return fiber_frames(f, find)
    except gdb.error:
        return None


def describe_wait(d, f, live):
    if f.state != "parked":
        if f.state == "running" and f.thread is not None:
            return "running on thread %d (LWP %d)" % (f.thread.num, f.thread.ptid[1])
        return ""
    try:
        if saved_context(f)[_CONTEXTS[_arch_name()]["pc_reg"]] == 0:
            return "? (stack not in this core)"
    except gdb.MemoryError:
        return "? (stack unreadable)"
    if f.wait == d.w_timer:
        if live:
            import time
            left = (f.deadline - time.monotonic_ns()) / 1e6 if hasattr(time, "monotonic_ns") else 0
            return "timer (sleep), due in %.0f ms" % left
        return "timer (sleep), due at %.3f s monotonic" % (f.deadline / 1e9)
    if f.wait == d.w_io and f.io:
        fd, ev = struct.unpack("<iI", _read(f.io + d.off_io_fd, 8))
        kind = "/".join(k for k, bit in (("in", _EPOLLIN), ("out", _EPOLLOUT)) if ev & bit)
        return "fd %d (%s)" % (fd, kind or "events %#x" % ev)
    if getattr(f, "skip_unwind", False):
        return "?"
    what = _wait_object(f)
    return what if what else "wake-up"


# ---- commands --------------------------------------------------------------------------------


def _human(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


UNWIND_MAX = 1000  # parked fibers whose frames `lacuna fibers` reads to tell what they wait on


def list_fibers(arg=""):
    """The table of `lacuna fibers [STATE|NAME]`: every fiber, or those in that state or of that
    name."""
    d = Descriptor()
    fs = fibers(d)
    want = arg.strip()
    if want:
        fs = [f for f in fs if want in (f.state, f.name)]
    live = _is_native()
    rows = []
    unwinds = 0
    for f in fs:
        if f.state == "parked" and f.wait == d.w_none:
            unwinds += 1
            if unwinds > UNWIND_MAX:
                f.skip_unwind = True
        if f.state == "running" and f.thread is not None:
            used = f.stack + f.stack_size - f.thread_sp
        elif f.stack and f.sp and f.state in ("parked", "ready"):
            used = f.stack + f.stack_size - f.sp
        else:
            used = None
        stack = "-" if used is None else "%s / %s" % (_human(used), _human(f.stack_size))
        rows.append(("%#x" % f.id, f.name or "(unnamed)", f.state, stack, describe_wait(d, f, live)))
    head = ("ID", "NAME", "STATE", "STACK USED", "WAITING ON")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    line = "%%-%ds  %%-%ds  %%-%ds  %%-%ds  %%s" % tuple(widths)
    gdb.write(line % head + "\n")
    for r in rows:
        gdb.write((line % r).rstrip() + "\n")
    gdb.write("%d fiber%s\n" % (len(rows), "" if len(rows) == 1 else "s"))
    if unwinds > UNWIND_MAX:
        gdb.write("(what parked fibers wait on is read from the first %d only: "
                  "`lacuna bt ID` shows where any other one is)\n" % UNWIND_MAX)


def find_fiber(key, fs):
    try:
        want = int(key, 0)
    except ValueError:
        want = None
    by_id = [f for f in fs if want is not None and (f.id == want or f.idx == want)]
    if by_id:
        return by_id[0]
    named = [f for f in fs if f.name == key]
    if len(named) == 1:
        return named[0]
    if named:
        raise LacunaError("lacuna: %d fibers are named %s: give an id" % (len(named), key))
    raise LacunaError("lacuna: no live fiber %s (see `lacuna fibers`)" % key)


def print_bt(args):
    argv = gdb.string_to_argv(args)
    full = "full" in argv
    argv = [a for a in argv if a != "full"]
    if len(argv) != 1:
        raise LacunaError("usage: lacuna bt ID|NAME|all [full]")
    fs = fibers()
    targets = [f for f in fs if f.state != "done"] if argv[0] == "all" else [find_fiber(argv[0], fs)]
    for f in targets:
        w = f.worker_index()
        where = "" if w is None else ", worker %d" % w
        gdb.write("fiber %#x \"%s\" (%s%s):\n" % (f.id, f.name or "(unnamed)", f.state, where))
        for line in backtrace_lines(f, full):
            gdb.write(line + "\n")


class LacunaPrefix(gdb.Command):
    """lacuna's fibers: `lacuna fibers`, `lacuna bt ID|NAME|all [full]` (docs/debugging.md)."""

    def __init__(self):
        super(LacunaPrefix, self).__init__("lacuna", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class LacunaFibers(gdb.Command):
    """List lacuna's live fibers: lacuna fibers [STATE|NAME].

Shows each fiber's id (lacuna_fiber_id, also its handle), name, state (ready, running, parked,
done), what a parked fiber waits on, and its stack used (the top of its stack minus its saved or
current stack pointer) of its size. With STATE or NAME, only the fibers in that state or of that
name. See docs/debugging.md."""

    def __init__(self, name="lacuna fibers"):
        super(LacunaFibers, self).__init__(name, gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        list_fibers(arg)


class LacunaBt(gdb.Command):
    """Show a fiber's backtrace: lacuna bt ID|NAME|all [full].

ID is the fiber's id (as `lacuna fibers` lists it) or its block index, NAME its name (if unique),
`all` every fiber not ended. A parked or ready fiber's frames are unwound from the context it
saved when it switched out; a running fiber's are its thread's. `full` adds each frame's locals."""

    def __init__(self):
        super(LacunaBt, self).__init__("lacuna bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        print_bt(arg)


if _gdb_unwinder is not None:
    _install_unwinder()  # now: registering flushes gdb's frames (and the selected frame)
LacunaPrefix()
LacunaFibers()
LacunaFibers("info lacuna-fibers")
LacunaBt()
