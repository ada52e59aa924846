"""The sandboxed side of a Python check: holds the candidate, answers the judge with plain data, never judges.

Run by `python.py` as `python -S -s -B python_sandbox.py`, the job (JSON) on stdin; standard library
only and Python 3.8+, as the interpreter may be another environment's. It forks in two:

* the supervisor enters new namespaces, then waits for the runner, kills it at the time limit and
  writes how it ended to a file only it holds. It never runs candidate code;
* the runner locks itself down (`python_lockdown`), says "ready", then serves the judge's requests
  on a pipe, one JSON line each way: load the candidate, call one of its functions, read or set an
  attribute of one of its objects, exec DS-1000's program. Every answer is plain data
  (`python_data`); an object that is not data stays here and the judge gets a number for it.
  Each answer carries the nonce of the request it answers, which the judge checks.

Whatever the candidate does here (patch this script, forge answers, write to the pipes, exit)
changes only what data reaches the judge, or ends the run: the tests, the comparisons and the
verdict are in the judge's process, out of reach. A line it writes on the channel itself counts
only where it is exactly the one answer to the request being served (as if the call had returned
that value); anything else there, before, after or in between, ends the run (`python_judge.Sandbox`).
"""

import json
import os
import sys
import types

if __package__:  # imported as codelutra.execution.python_sandbox (tests, tools)
    from codelutra.execution import python_data
    from codelutra.execution import python_lockdown as lockdown
else:  # run as a script by python.py: its own directory is first on sys.path
    import python_data
    import python_lockdown as lockdown

FILES_LIMIT_BYTES = 16 * 1024**2  # how much of the files a DS-1000 program writes (its plot) goes back


def main():
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [path for path in job["module_path"] if path not in ("", ".", here)]  # -S: no site; none of ours
    profile, notes = lockdown.enter_namespaces()
    runner = os.fork()
    if runner == 0:
        os.close(job["finished_fd"])  # only the supervisor says how the runner ended
        run(job, profile, notes, reporter(job["report_fd"]))
    for fd in (job["report_fd"], job.get("request_fd"), job.get("reply_fd")):
        if fd is not None:
            os.close(fd)  # so that the judge sees the end of the pipe when the runner ends
    supervise(runner, job, reporter(job["finished_fd"]))


def reporter(fd, write=os.write, dumps=json.dumps):
    """report(event, **fields): one JSON line on `fd`."""
    def report(event, **fields):
        fields["event"] = event
        write(fd, ("\n" + dumps(fields) + "\n").encode("utf-8", "backslashreplace"))
    return report


# --- The supervisor ----------------------------------------------------------------------------


def supervise(runner, job, report):
    """Wait for the runner, kill it at the time limit, report how it ended. Runs no candidate code."""
    import signal

    timed_out = []

    def kill_runner():
        for send in (os.kill, os.killpg):  # the runner, and its process group (it leads its own session)
            try:
                send(runner, signal.SIGKILL)
            except OSError:
                pass

    def on_time_limit(signum, frame):
        timed_out.append(True)
        kill_runner()

    signal.signal(signal.SIGALRM, on_time_limit)
    signal.setitimer(signal.ITIMER_REAL, job["timeout_s"])
    os.waitid(os.P_PID, runner, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped: its pid is still its own
    signal.setitimer(signal.ITIMER_REAL, 0)
    kill_runner()  # what it left running, where no PID namespace ended with it
    _, status, usage = os.wait4(runner, 0)
    killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    cpu_exceeded = (killed_by in (signal.SIGKILL, signal.SIGXCPU)
                    and usage.ru_utime + usage.ru_stime >= job["limits"]["cpu_s"] - 0.5)
    report("finished", exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, signal=killed_by,
           timed_out=bool(timed_out), cpu_exceeded=cpu_exceeded)
    os._exit(0)


# --- The runner --------------------------------------------------------------------------------


def run(job, profile, notes, report):
    """The runner's whole life: lock down, then serve the judge (or, probing, say how locked down it is)."""
    os.setsid()  # its own session and process group: what the supervisor kills
    try:
        levels = lockdown.lock_down(job, profile, notes)
    except Exception as error:  # e.g. a hard limit below ours, for a caller without root
        report("setup_error", detail=f"lock-down failed: {type(error).__name__}: {error}")
        os._exit(0)
    achieved = {name: levels[name] for name in ("network", "filesystem", "user", "processes")}
    if job["probe"]:
        report("isolation", **levels)
    elif achieved != job["expect"]:
        report("setup_error", detail="sandbox is {!r}, expected {!r} ({})".format(achieved, job["expect"], "; ".join(notes)))
    else:
        lockdown.guard(job["scratch"], report)
        report("ready")  # from here on, the candidate may write to this channel too
        try:
            serve(job["request_fd"], job["reply_fd"])
            report("done")  # the judge closed the pipe: the candidate did not end the run itself
        except BaseException:
            os._exit(1)  # never back into main(): this process is the runner
        for stream in (sys.stdout, sys.stderr):  # what it printed, for the caller to quote (os._exit drops it)
            try:
                stream.flush()
            except Exception:
                pass
    os._exit(0)


def serve(request_fd, reply_fd, write=os.write, dumps=json.dumps, loads=json.loads, BaseException=BaseException,
          BrokenPipeError=BrokenPipeError):
    """Answer the judge's requests until it closes the pipes."""
    requests = os.fdopen(request_fd, "rb")
    candidate = Candidate()
    while True:
        line = requests.readline()
        if not line:
            return
        request = loads(line)
        reply = {"nonce": request["nonce"]}  # which request this answers: the judge takes no other line
        try:
            reply["ok"] = candidate.encode(candidate.answer(request))
        except BaseException as error:
            if isinstance(error, MemoryError):
                candidate.forget()  # free what the candidate holds, to have room to answer
            try:
                reply["error"] = candidate.describe(error)
            except BaseException:
                reply["error"] = {"type": "MemoryError" if isinstance(error, MemoryError) else "Exception"}
            del error
        data = (dumps(reply, allow_nan=True) + "\n").encode("utf-8", "surrogatepass")
        try:
            while data:
                data = data[write(reply_fd, data):]
        except BrokenPipeError:  # the judge has decided (a broken channel) and gone: the run is over, as at the end
            return


class Candidate:
    """The candidate's namespace and the objects of its that the judge holds numbers for."""

    def __init__(self):
        self.namespace = {"__name__": "__candidate__"}  # not "__main__": demo code under `if __name__...` stays out
        self.objects = []
        self.sources = {}  # file name -> source, to quote the line that failed

    def answer(self, request):
        op = request["op"]
        if op == "finish":  # the judge's last round trip, after the tests: nothing to do but answer
            return None
        if op == "load":
            return self.load(request["code"], request["setup"], request["names"])
        if op == "compile":
            self.compile(request["code"])
            return None
        if op == "exec":
            return self.exec_program(request["code"], self.decode(request["env"]))
        target = self.objects[request["target"]]
        if op == "call":
            return target(*self.decode(request["args"]), **self.decode(request["kwargs"]))
        if op == "getattr":
            return getattr(target, request["name"])
        if op == "convert":
            return {"bool": bool, "len": len, "list": list}[request["into"]](target)
        if op == "setattr":
            setattr(target, request["name"], self.decode(request["value"]))
            return None
        raise ValueError(f"unknown request {op!r}")

    def compile(self, source):
        self.sources["<candidate>"] = source
        try:
            return compile(source, "<candidate>", "exec", dont_inherit=True, optimize=0)
        except BaseException as error:
            error.codelutra_compile = True  # a syntax error, not a failure while running
            raise

    def load(self, source, setup, names):
        """Run the candidate's code, then the setup code; answer with the names the tests use: data,
        modules' names, or numbers. The setup runs here too (MBPP's imports are the candidate's
        globals as well as the tests'); where it fails, it fails again in the judge, which says so."""
        exec(self.compile(source), self.namespace)
        try:
            exec(compile(setup, "<setup>", "exec", dont_inherit=True), self.namespace)
        except Exception:
            pass
        found, modules = {}, {}
        for name in names:
            if name in self.namespace:
                value = self.namespace[name]
                if isinstance(value, types.ModuleType):
                    modules[name] = value.__name__
                else:
                    found[name] = value
        return {"values": found, "modules": modules}

    def exec_program(self, source, env):
        """DS-1000: run the program in `env`; answer with its variables and the files it wrote."""
        before = self.files()
        exec(self.compile(source), env)
        variables = {name: value for name, value in env.items()
                     if not name.startswith("__") and not isinstance(value, types.ModuleType)}
        written, total = {}, 0
        for name, stamp in self.files().items():
            if before.get(name) != stamp and total + stamp[1] <= FILES_LIMIT_BYTES:
                with open(name, "rb") as file:
                    written[name] = file.read(stamp[1])
                total += len(written[name])
        return {"variables": variables, "files": written}

    @staticmethod
    def files():
        """Regular files in the working dir: name -> (modification time, size)."""
        found = {}
        for entry in os.scandir("."):
            if entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                found[entry.name] = (info.st_mtime_ns, info.st_size)
        return found

    def encode(self, value):
        return python_data.encode(value, 0, self.keep)

    def decode(self, data):
        return python_data.decode(data, 0, self.objects.__getitem__)

    def keep(self, value):
        self.objects.append(value)
        return len(self.objects) - 1

    def forget(self):
        self.namespace.clear()
        del self.objects[:]

    def describe(self, error):
        """The error as data: its type's name, its arguments (as text if they are not data), the line."""
        try:
            args = python_data.encode(tuple(error.args))
        except BaseException:
            args = None
        try:
            message = str(error)[:500]
        except BaseException:
            message = "(unprintable)"
        return {"type": type(error).__name__, "args": args, "message": message, "line": self.failing_line(error),
                "compile": bool(getattr(error, "codelutra_compile", False)), "memory": isinstance(error, MemoryError)}

    def failing_line(self, error):
        """The deepest line of the candidate's code in the traceback."""
        line, traceback = "", error.__traceback__
        while traceback is not None:
            lines = self.sources.get(traceback.tb_frame.f_code.co_filename, "").splitlines()
            if 0 < traceback.tb_lineno <= len(lines):
                line = lines[traceback.tb_lineno - 1].strip()
            traceback = traceback.tb_next
        return line


if __name__ == "__main__":
    main()
