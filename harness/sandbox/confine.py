"""The operating-system boundary of the `os` sandbox level (Linux): namespaces, a minimal read-only
filesystem view with one private writable /tmp, and an unprivileged identity without capabilities.

bootstrap.py imports this file (as a top-level module: the child's sys.path does not hold the repository)
and calls it before the program runs. ctypes is used here, by trusted code, for the system calls the
standard library of Python 3.11 lacks (unshare, mount, prctl, capset); bootstrap.py drops it from
sys.modules afterwards and its guard refuses to import it again.

Why the Linux primitives and not bubblewrap: they are in every Linux kernel this harness runs on (no
package to install), cost one unshare + ~12 mounts per program (measured by bench/sandbox_throughput.py),
and bubblewrap run as root cannot change to an unprivileged uid by itself (its user namespace maps the
sandbox's uid back to root, which still owns root's files), which is the case on CI and on GPU boxes.
"""

import ctypes
import os

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIGKILL = 9  # not signal.SIGKILL: importing `signal` (and enum) would cost every program ~7 ms
_CAPABILITY_VERSION_3 = 0x20080522
# The identity programs run as: `nobody` on Debian and most distributions; no file on a normal system is
# owned by it, so the program can read only what every user may read.
SANDBOX_UID = SANDBOX_GID = 65534
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
# statvfs flags of a mount that a bind remount in a user namespace must keep (they are locked there).
_KEPT_FLAGS = {os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"sandbox: {what}: {os.strerror(errno)}")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = _encode
    _check(_libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {source} on {target}")


def die_with_parent() -> None:
    """SIGKILL this process when the process (thread) that started it ends."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def enter_namespaces() -> None:
    """New mount, network, IPC, UTS and PID namespaces (the next child is PID 1 of the new one).

    As root the namespaces are created directly; anyone else needs a user namespace to own them, in which
    the sandbox's uid is mapped onto the caller's own uid (the only one an unprivileged user may map).
    """
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() != 0:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if flags & CLONE_NEWUSER:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{SANDBOX_UID} {uid} 1"),
                           ("gid_map", f"{SANDBOX_GID} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _bind(source: str, target: str, *, writable: bool = False, devices: bool = False) -> None:
    _mount(source, target, None, MS_BIND)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if writable else MS_RDONLY) | (0 if devices else MS_NODEV)
    kept = os.statvfs(source).f_flag
    flags |= sum(ms for st, ms in _KEPT_FLAGS.items() if kept & st)
    _mount(None, target, None, flags)


def _make_path(new_root: str, path: str, is_dir: bool) -> str:
    target = new_root + path
    os.makedirs(target if is_dir else os.path.dirname(target), mode=0o755, exist_ok=True)
    if not is_dir and not os.path.exists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    return target


def build_root(new_root: str, read_only: list[str], program: str, tmp_bytes: int) -> None:
    """Make `new_root` the filesystem root: `read_only` paths (bound read-only at the same place), the
    program at /program.py, four harmless devices, and an empty size-limited tmpfs at /tmp (the cwd).

    Nothing else of the host is visible: no /home, /root, /proc (so no /proc/self/mem), /sys or /run.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # none of what follows propagates to the host
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096")
    for path in read_only:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            os.symlink(os.readlink(path), new_root + path)  # /bin -> usr/bin on merged-/usr systems
        elif os.path.isdir(path) or os.path.isfile(path):
            _bind(path, _make_path(new_root, path, os.path.isdir(path)))
    _bind(program, _make_path(new_root, "/program.py", False))
    for device in DEVICES:
        if os.path.exists(device):
            _bind(device, _make_path(new_root, device, False), devices=True)
    tmp = _make_path(new_root, "/tmp", True)
    _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_bytes},nr_inodes=4096")
    _mount(None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # Move the new root over the old one and enter it (switch_root's way). The old tree is hidden under
    # it and this process holds no directory fd into it, so no relative path can lead back.
    os.chdir(new_root)
    _mount(new_root, "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/tmp")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def become_unprivileged() -> None:
    """Run on as uid/gid 65534 with no supplementary groups, no capabilities and no way to gain any."""
    if os.getuid() == 0:  # real root: a real change of identity, which also clears the capabilities
        os.setgroups([])
        os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    # In a user namespace the uid is already 65534 but the namespace's capabilities remain: drop them all.
    _check(_libc.capset(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), (_CapData * 2)()), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.getuid() != SANDBOX_UID or os.geteuid() != SANDBOX_UID:
        raise OSError(f"sandbox: still uid {os.geteuid()} after dropping privileges")
