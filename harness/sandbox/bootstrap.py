"""Runs inside the sandbox child: confine it, set rlimits, install the guard, run the model-written program.

runner.py starts it as `python -s [-S] bootstrap.py CONFIG_JSON` in a new session. Standard library only
(plus confine.py beside it): the child's sys.path does not hold the repository.

At the `os` level this process (P0) enters new namespaces and forks the program's process (P1, PID 1 of
the new PID namespace), then only waits and relays P1's exit status; P1 builds its filesystem view and
drops to uid 65534 (confine.py) before the steps below. At the `process` level this process is P1.

Verdict: the runner counts a program as passed when P1 exits 0 after writing "started" (see runner.py).
There is no token or other proof of passing in the child for a program to find: the only ways to exit 0
are running to the last line (every failure path below raises SystemExit(1) from a class held in a
local, which a program cannot rebind) or calling exit()/_exit() from C, which the program cannot reach:
`os._exit` is replaced before it starts, fresh builtin modules cannot be created (`_imp.create_builtin`
answers with the already-stripped ones), extension modules that could (ctypes, _posixsubprocess) may not
be imported, and new processes may not be started. Tracing and profiling (which could skip a failing
assert), new audit hooks, signal handlers and threads (which could run code between the tests'
statements) are refused; the failure path unsets PYTHONINSPECT (whose prompt would exit 0 on EOF). The
status fd is closed before the program runs.

The guard is an audit hook (PEP 578): the interpreter calls it before each sensitive operation, whoever
makes the call, and a program cannot remove it. It refuses to start processes or interpreters, signal
other processes, use the network, raise rlimits, load modules that reach the C level (ctypes, ...), and
to change anything on disk outside the work directory. At the `os` level it is a second layer: the
namespaces, the read-only view and the unprivileged uid hold without it. At the `process` level it is
the only layer, and it is in-process: C code making system calls itself, or a bug in CPython, gets past it.

Writes are checked lexically: the program cannot create symlinks and starts in an empty directory with no
symlinks, so a normalised path under the work directory really is under it. The hook uses only functions
captured before the program runs, so monkeypatching `os` or `os.path` cannot fool it.

Residual risks, at every level: tests compare with `==` and call builtins by name, so a completion that
returns an object whose `__eq__` always answers True, or that rebinds a builtin or module function the
tests use (`abs`, `math.isclose`), or rebinds `check` from a finalizer before it is called, passes
wrong. That is inherent to running HumanEval/MBPP tests in the program's own interpreter, as every
harness does; the verdict cannot be forged through the channels named above. (A completion that
swallows the tests appended to it as text is failed before running, by suites/knowledge/code_metric.py.)
"""

import _imp
import _warnings
import marshal
import os
import posix
import resource
import stat
import sys
import types

# Operations the program may never perform. "os.exec" is execv & co; "exec" (the builtin) stays allowed.
_BLOCKED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile",
    "subprocess.Popen", "cpython.PyInterpreterState_New",
    "resource.setrlimit", "resource.prlimit",  # root could raise its own hard limits
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo",
    "os.symlink",  # a symlink inside the work directory would defeat the lexical path check
    "fcntl.ioctl",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    # A trace or profile function can jump over a failing assert or rewrite what `check` sees.
    "sys.settrace", "sys.setprofile", "sys._current_frames", "sys.addaudithook",
})
# Modules that give the program raw C access or unaudited side doors (interpreters, shared memory, dbm files).
_BLOCKED_MODULE_PREFIXES = ("ctypes", "_ctypes", "cffi", "_cffi_backend", "_test", "_xx", "_posixshmem",
                            "_gdbm", "_dbm", "readline", "_tkinter", "_curses", "confine")
# Functions with no audit event: replaced in their modules, which then may not be imported afresh.
# _exit could end a failing program with status 0; signal handlers and threads run code between statements.
_STRIPPED = {
    "posix": ("mknod", "mkfifo", "pidfd_open", "chroot", "setns", "unshare", "_exit"),
    "os": ("mknod", "mkfifo", "pidfd_open", "chroot", "setns", "unshare", "_exit"),
    "_signal": ("pidfd_send_signal", "signal"),  # the `signal` module calls these at call time
    "_thread": ("start_new_thread", "start_new"),
    "_posixsubprocess": ("fork_exec",),  # subprocess stays importable; Popen is refused by its event
}
# Event -> (indices of path arguments, indices of their dir_fd arguments), as CPython 3.10-3.13 pass them.
_PATH_EVENTS = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()),
    "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "shutil.rmtree": ((0,), (1,)),
    "sqlite3.connect": ((0,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})


# Stripped modules that an import could create afresh (builtin ones cannot: see _strip_unaudited_functions).
_NO_FRESH_IMPORT = frozenset({"_posixsubprocess"})


def _denier():
    error = PermissionError  # captured: the program may rebind the builtin name

    def deny(event: str, detail: object = "") -> None:
        raise error(f"sandbox: {event} {detail!s:.200} is not allowed" if detail else f"sandbox: {event} is not allowed")

    return deny


def _path_checks(root: str, path_types: tuple[type, ...], deny):
    """(absolute, check_write, check_read) for the paths a program names, confined to `root`."""
    # Captured C functions and types, so that monkeypatching os, os.path or builtins cannot fool the checks.
    getcwd, readlink, stat_, is_dir, is_reg = posix.getcwd, posix.readlink, posix.stat, stat.S_ISDIR, stat.S_ISREG
    fstat, root_device, os_error = posix.fstat, posix.stat(root).st_dev, OSError
    proc_device = posix.stat("/proc").st_dev if posix.access("/proc", posix.F_OK) else None
    str_, bytes_, int_, type_, readable_devices = str, bytes, int, type, _READABLE_DEVICES

    def normalise(path: str) -> str:
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def fd_path(event: str, fd: object) -> str:
        try:
            return readlink(f"/proc/self/fd/{fd}")
        except os_error:
            pass
        # No /proc (the `os` level): an fd on the work directory's own filesystem counts as the work
        # directory itself. Stricter than the truth for relative paths; the OS boundary does the rest.
        if type_(fd) is int_ and fstat(fd).st_dev == root_device:
            return root
        deny(event, "a file descriptor outside the work directory")

    def absolute(event: str, path: object, dir_fd: object = None) -> str:
        # Exact types only: a str subclass or a custom PathLike could answer differently on the next call.
        if type_(path) is int_:
            return fd_path(event, path)
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        elif type_(path) in path_types:
            path = str_(path)
        elif type_(path) is not str_:
            deny(event, f"a path of type {type_(path).__name__}")
        if not path.startswith("/"):
            # Events report "no dir_fd" as -1 (or None); AT_FDCWD (-100) means the same.
            base = getcwd() if dir_fd in (None, -1, -100) else fd_path(event, dir_fd)
            path = base + "/" + path
        return normalise(path)

    def inside(path: str) -> bool:
        return path == root or path.startswith(root + "/")

    def check_write(event: str, path: object, dir_fd: object = None) -> None:
        target = absolute(event, path, dir_fd)
        if not inside(target):
            deny(event, target)

    def check_read(path: object) -> None:
        target = absolute("open", path)
        # /proc holds this process's memory and other processes' environments (`process` level only: the
        # `os` level has no /proc). Checked on the file the kernel would open too, whatever the path.
        if target == "/proc" or target.startswith("/proc/"):
            deny("opening", target)
        try:
            device = stat_(path).st_dev  # follows symlinks and ".." as the open will
        except os_error:
            device = None
        if device is not None and device == proc_device:
            deny("opening", target)
        if inside(target):
            return
        try:
            mode = stat_(target).st_mode
        except os_error:
            return  # the open itself will fail
        # A directory fd from outside would let dir_fd-relative opens (whose event omits dir_fd) escape.
        if is_dir(mode) or not (is_reg(mode) or target in readable_devices):
            deny("opening", target)

    return absolute, check_write, check_read


def make_guard(work_dir: str, path_types: tuple[type, ...] = ()):
    """The audit hook that confines the program to `work_dir`.

    The hook reads no module globals or builtins at call time: the program could rebind those (this
    module is reachable through frames), but not the closure's locals captured here.
    """
    root = os.path.realpath(work_dir)
    own_pid = os.getpid()
    deny = _denier()
    absolute, check_write, check_read = _path_checks(root, path_types, deny)
    str_, int_, type_, len_, range_ = str, int, type, len, range
    blocked_events, blocked_prefixes, stripped = _BLOCKED_EVENTS, _BLOCKED_MODULE_PREFIXES, _NO_FRESH_IMPORT
    path_events, write_flags = dict(_PATH_EVENTS), _WRITE_FLAGS

    def hook(event: str, args: tuple) -> None:
        if event in blocked_events:
            deny(event)
        elif event == "import":
            name = args[0]
            if type_(name) is not str_ or name.startswith(blocked_prefixes) or name in stripped:
                deny("import of", name)
        elif event == "open":
            path, flags = args[0], args[2]
            if type_(path) is int_:
                return  # wraps an fd the program already holds, obtained through checked calls
            if flags & write_flags:
                check_write(event, path)
            else:
                check_read(path)
        elif event in path_events:
            path_indices, dir_fd_indices = path_events[event]
            if event == "sqlite3.connect" and type_(args[0]) is str_:  # exact str: no custom __eq__
                if args[0] in (":memory:", ""):
                    return
                if args[0].startswith("file:"):
                    deny(event, "URI filenames")
            for i in range_(len_(path_indices)):
                dir_fd = args[dir_fd_indices[i]] if i < len_(dir_fd_indices) else None
                check_write(event, args[path_indices[i]], dir_fd)
        elif event == "os.chdir":
            # The cwd stays the work directory: then a relative path checked against the cwd is a stricter
            # check than against any dir_fd under it ("open" events do not report their dir_fd).
            if absolute(event, args[0]) != root:
                deny(event, args[0])
        elif event == "object.__setattr__":
            if type_(args[1]) is str_ and args[1] == "__code__":  # a function's code swapped under its caller
                deny("replacing a function's __code__")
        elif event in ("os.kill", "os.killpg"):
            if event == "os.killpg" or args[0] != own_pid:
                deny(event, args[0])

    return hook


def _set_rlimits(rlimits: dict[str, int]) -> None:
    for name, value in rlimits.items():
        which = getattr(resource, name)
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # only lowering is possible without privileges
        resource.setrlimit(which, (value, value))  # soft = hard: at the CPU limit the kernel sends SIGKILL


def _refused(name: str):
    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(f"sandbox: {name} is not allowed")
    return refused


def _strip_unaudited_functions() -> None:
    import _posixsubprocess  # noqa: F401 - imported so that it can be stripped before the program runs

    # Every builtin module exists once, stripped: `_imp.create_builtin` would otherwise build a fresh,
    # whole `posix` or `_signal`, and `_imp.exec_builtin` re-run a module's set-up.
    # (Quietly: some builtin modules warn that they are deprecated when imported, e.g. spwd.)
    ignore_deprecation = ("ignore", None, DeprecationWarning, None, 0)
    _warnings.filters.insert(0, ignore_deprecation)
    _warnings._filters_mutated()
    try:
        builtin = {name: __import__(name) for name in sys.builtin_module_names}
    finally:
        _warnings.filters.remove(ignore_deprecation)
        _warnings._filters_mutated()
    for module_name, names in _STRIPPED.items():
        module = sys.modules.get(module_name)
        for name in names:
            if module is not None and hasattr(module, name):
                # A refusing stub rather than delattr: `from _posixsubprocess import fork_exec` must still work.
                setattr(module, name, _refused(f"{module_name}.{name}"))
    _imp.create_builtin = lambda spec: builtin[spec.name]
    _imp.exec_builtin = lambda module: 0


def _confine(config: dict) -> None:
    """The `os` level: new namespaces; this process waits for the program's and relays how it ended."""
    import confine

    confine.die_with_parent()
    if os.getppid() != config["harness_pid"]:
        os._exit(137)  # the harness died before the line above
    confine.enter_namespaces()
    pid = os.fork()
    if pid:
        os.close(config["status_fd"])
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os._exit(code if code >= 0 else 128 - code)  # as a shell reports a signal
    confine.die_with_parent()
    confine.build_root(config["new_root"], config["read_only"], config["program"], config["tmp_bytes"])
    confine.become_unprivileged()
    confine.die_with_parent()  # a change of uid clears it
    for name in [m for m in sys.modules if m.startswith(("ctypes", "_ctypes", "confine"))]:
        del sys.modules[name]  # ctypes was for the trusted set-up only; the guard refuses it from here on


def _path_types(source: str) -> tuple[type, ...]:
    """pathlib's path classes, which the guard then accepts as paths, when the program names pathlib.

    Importing pathlib costs ~6 ms of each program's start; a program that reaches it without naming it
    only finds its paths refused (the guard accepts exact, known types only).
    """
    if "pathlib" not in source:
        return ()
    import pathlib

    return (pathlib.PurePosixPath, pathlib.PosixPath)


def main() -> None:
    # Held in locals from here on: the program can rebind builtins and this module's globals, not these.
    system_exit, base_exception, sys_module = SystemExit, BaseException, sys
    print_exception, exc_info, unsetenv = sys.__excepthook__, sys.exc_info, posix.unsetenv
    config = marshal.loads(bytes.fromhex(sys.argv[1]))  # marshal: builtin, no import cost (json costs ~12 ms)
    status_fd = config["status_fd"]
    if config["level"] == "os":
        _confine(config)  # imports confine.py from this file's directory, still sys.path[0]
        program_path, work_dir = "/program.py", "/tmp"
    else:
        program_path, work_dir = config["program"], config["work_dir"]
    if sys.path and config["bootstrap_dir"] == os.path.abspath(sys.path[0] or "."):
        del sys.path[0]  # the harness's own directory is not for the program to import from
    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    _set_rlimits(config["rlimits"])
    _strip_unaudited_functions()
    sys.addaudithook(make_guard(work_dir, _path_types(source)))
    os.write(status_fd, b"started\n")  # from here on a crash is the program's, not the sandbox's
    os.close(status_fd)

    # A real __main__ module, so that e.g. pickle finds the program's classes; it also hides this module.
    program = types.ModuleType("__main__")
    program.__file__ = program_path
    sys.modules["__main__"], sys.argv = program, [program_path]
    try:
        exec(compile(source, program_path, "exec"), program.__dict__)
    except base_exception:  # SystemExit too: leaving early, with any status, is not passing
        try:
            kind, value, trace = exc_info()
            value.__traceback__ = trace.tb_next or trace  # shown from the program's frame on
            print_exception(kind, value, value.__traceback__)
        except base_exception:
            pass  # the exception's own __str__ may raise; the verdict is "failed" either way
        for stream in ("stdout", "stderr"):
            try:
                getattr(sys_module, stream).flush()
            except base_exception:
                pass
        try:
            # Else an exception escaping here (a KeyboardInterrupt the program arranged) would start the
            # interactive prompt, which reads /dev/null and exits 0.
            unsetenv("PYTHONINSPECT")
        except base_exception:
            pass
        raise system_exit(1) from None
    # The end of the program: the interpreter flushes and exits 0 (atexit handlers cannot change that).


if __name__ == "__main__":
    main()
