"""The sandbox's lock-down: namespaces, mounts, user, limits, and the audit hook (standard library only).

Imported by `python_sandbox.py` (the script the sandbox runs, Python 3.8+, possibly another
environment's interpreter) before any candidate code runs; see `python.py` for what each level
achieves and when.
"""

import ctypes
import os
import re
import resource
import signal
import stat
import sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 0x400, 0x800, 0x1000, 0x2000, 0x4000
MS_PRIVATE, MS_RELATIME = 0x40000, 0x200000
KEPT_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                    "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox"})
WRITABLE_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
NETWORK_EVENTS = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class SandboxViolation(PermissionError):
    """Raised in the candidate when it attempts what the sandbox forbids."""



def enter_namespaces():
    """Unshare what this process may, for the runner it forks next; returns (profile, notes).

    "full" (root): mount, network, PID and IPC namespaces. "user": a user namespace with network
    and PID namespaces, for a caller without root where that is allowed. "none": nothing."""
    notes = []
    for profile, flags in (("full", CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC),
                           ("user", CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID)):
        if libc.unshare(flags) == 0:
            return profile, notes
        notes.append(f"unshare ({profile}): {os.strerror(ctypes.get_errno())}")
    return "none", notes



def lock_down(job, profile, notes):
    """Confine this process as far as it may; returns the levels achieved (as in Isolation) and notes."""
    scratch, uid, limits = job["scratch"], job["uid"], job["limits"]
    namespaced = profile != "none"
    levels = {"network": "namespace" if namespaced else "guard", "filesystem": "permissions",
              "user": "caller", "processes": "pid namespace" if namespaced else "session", "notes": notes}
    is_root = os.geteuid() == 0 and profile != "user"
    if profile == "full":
        try:
            mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted from here on is seen outside
            make_mounts_read_only()
            mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's
            mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits['scratch_bytes']},mode=0700")
            expose_interpreter(staging=scratch)
            os.chdir(scratch)  # the tmpfs, not the directory under it
            levels["filesystem"] = "read-only"
        except OSError as error:
            notes.append(f"mounts: {error}")
    drop_user = False
    if is_root:
        unreachable = [path for path in interpreter_dirs() if not reachable_by_others(path)]
        if closed_ancestor(os.path.dirname(scratch)) is not None:
            unreachable.append(scratch)
        drop_user = not unreachable
        if unreachable:
            notes.append(f"uid {uid} cannot read {unreachable[0]}")

    set_limit(resource.RLIMIT_CPU, limits["cpu_s"])
    set_limit(resource.RLIMIT_AS, limits["memory_bytes"])
    set_limit(resource.RLIMIT_FSIZE, limits["file_size_bytes"])
    set_limit(resource.RLIMIT_CORE, 0)
    if drop_user:
        os.chown(scratch, uid, uid)
        set_limit(resource.RLIMIT_NPROC, limits["processes"])
    call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if drop_user:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability goes
        levels["user"] = f"uid {uid}"
    call(libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    return levels


def set_limit(limit, value):
    """Set both the soft and hard limit to `value`, or to the hard limit already there if lower."""
    _, hard = resource.getrlimit(limit)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))


def call(function, *args):
    if function(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{function.__name__}{args!r}: {os.strerror(errno)}")


def mount(source, target, fstype, flags, data=None):
    call(libc.mount, _encoded(source), _encoded(target), _encoded(fstype), flags, _encoded(data))


def _encoded(text):
    return None if text is None else os.fsencode(text)


def make_mounts_read_only():
    """Remount every mount read-only, keeping its other flags (in this mount namespace only)."""
    with open("/proc/self/mountinfo") as mountinfo:
        lines = mountinfo.read().splitlines()
    for line in lines:
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(","):
            flags |= KEPT_MOUNT_FLAGS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except FileNotFoundError:
            pass  # hidden under another mount: out of reach anyway


def interpreter_dirs():
    """The directories this interpreter loads code from."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path}
    return sorted({os.path.realpath(path) for path in dirs if path and os.path.isdir(path)})


def closed_ancestor(path):
    """The first directory on the way to `path` (itself included) that other users cannot pass through."""
    parts = path.split("/")
    for end in range(2, len(parts) + 1):
        directory = "/".join(parts[:end])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return directory
    return None


def reachable_by_others(path):
    return closed_ancestor(path) is None and bool(os.stat(path).st_mode & stat.S_IROTH)


def expose_interpreter(staging):
    """Let other users reach the interpreter's directories where a closed directory is on the way
    (Python under /root, mode 0700): cover that directory, in this mount namespace only, with a
    read-only tmpfs holding just the way through, the interpreter's own subtrees bound back in."""
    for _ in range(8):  # a directory bound back in may hold another closed one
        ways = {}  # closed directory -> its entries on the way to interpreter directories
        for path in interpreter_dirs():
            closed = closed_ancestor(path)
            if closed is not None and closed != path:
                ways.setdefault(closed, set()).add(closed + "/" + path[len(closed) + 1:].split("/")[0])
        if not ways:
            return
        for closed, entries in ways.items():
            stages = []
            for number, entry in enumerate(sorted(entries)):
                stage = os.path.join(staging, f".stage-{number}")
                os.mkdir(stage)
                mount(entry, stage, None, MS_BIND | MS_REC)
                stages.append((stage, entry))
            mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711")
            for stage, entry in stages:
                os.mkdir(entry)
                mount(stage, entry, None, MS_MOVE)
                os.rmdir(stage)
            mount(None, closed, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# --- The runner: guard and check -------------------------------------------------------------


def guard(scratch, report, SandboxViolation=SandboxViolation):
    """Refuse, and report once, what a candidate may not do: an audit hook on the calls Python makes."""
    reported = []

    def outside(path):
        """The resolved path if it is outside the scratch dir, else None."""
        if path is None or isinstance(path, int):  # a file descriptor: opened already
            return None
        path = os.fsdecode(path)
        if path in WRITABLE_DEVICES:
            return None
        real = os.path.realpath(path)
        return None if real == scratch or real.startswith(scratch + "/") else real

    def changing(*positions):
        def check(args):
            for position in positions:
                where = outside(args[position])
                if where:
                    return f"changing {where}, outside the scratch dir"
        return check

    def opening(args):
        where = outside(args[0]) if args[2] & WRITE_FLAGS else None
        if where:
            return f"writing {where}, outside the scratch dir"

    def running(position):
        def check(args):
            program = os.path.basename(os.fsdecode(args[position]))
            if program in SHELLS:
                return f"running a shell ({program})"
        return check

    def signalling(args):
        target = args[0]
        if target == -1:
            return "sending a signal to every process it may"
        if target in (0, os.getpid(), -os.getpgrp()):  # its own process group, itself
            return None
        try:
            if target > 0 and os.getsid(target) == os.getsid(0):
                return None
        except OSError:
            pass
        return f"sending a signal to process {target}, outside the sandbox"

    def signalling_group(args):
        if args[0] not in (0, os.getpgrp()):
            return f"sending a signal to process group {args[0]}, outside the sandbox"

    checks = {
        "open": opening,
        "os.remove": changing(0), "os.rmdir": changing(0), "os.mkdir": changing(0), "os.chmod": changing(0),
        "os.chown": changing(0), "os.truncate": changing(0), "os.utime": changing(0), "shutil.rmtree": changing(0),
        "os.rename": changing(0, 1), "os.link": changing(1), "os.symlink": changing(1),
        "os.system": lambda args: "running a shell command",
        "subprocess.Popen": running(0), "os.exec": running(0), "os.posix_spawn": running(0), "os.spawn": running(1),
        "os.kill": signalling, "os.killpg": signalling_group,
    }
    for event in NETWORK_EVENTS:
        checks[event] = lambda args, event=event: f"network access ({event})"

    def hook(event, args):
        check = checks.get(event)
        if check is None:
            return
        try:
            problem = check(args)
        except Exception:
            problem = None  # arguments the call itself will reject
        if problem:
            if not reported:
                reported.append(problem)
                report("forbidden", detail=problem)
            raise SandboxViolation("forbidden by the sandbox: " + problem)

    sys.addaudithook(hook)


