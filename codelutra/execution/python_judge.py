"""The trusted side of a Python check: runs the tests; the candidate is only reached as data.

Run by `python.py` as `python -S -s -B python_judge.py`, the job (JSON) on stdin: a plain interpreter
of its own (the same one the sandbox uses, for DS-1000's libraries), as the caller's user, in a
private working dir, with memory and CPU limits. It never runs candidate code. It runs the
task's own test code (MBPP's setup and asserts, HumanEval's `check`, DS-1000's `code_context`),
in which the names the tests use from the candidate are bound to what the sandbox sent back:

* data (numbers, strings, containers, arrays, frames) rebuilt by this process (`python_data`),
  so an object's own `__eq__` never reaches a comparison;
* a module the candidate imported: the same module, imported here (standard library only);
* anything else (a function, a class, an instance): a `Remote`, whose calls, attributes, truth,
  length and items are requests to the sandbox (answered with data), and which refuses to be
  compared or hashed: a comparison would be the candidate's own `__eq__`.

DS-1000's `exec(code, test_env)` runs in the sandbox: `test_env` goes there as data, and the
program's variables (and the files it wrote, such as a plot) come back as data.

Requests and answers are one JSON line each, and an answer counts only as the one line that
answers the request just sent (`Sandbox`). "correct" is given only after the tests ran without an
exception and a last round trip found the sandbox alive and the channel holding nothing else.

The outcome is one JSON line on the result fd: {"kind", "detail"}; kind "ended" means the
sandbox ended, or wrote on the channel what is not the answer to a request, before that last
round trip was over, and `python.py` says why from its side.
"""

import builtins
import importlib
import json
import os
import resource
import secrets
import sys

if __package__:  # imported as codelutra.execution.python_judge (tests, tools)
    from codelutra.execution import python_data
else:  # run as a script by python.py: its own directory is first on sys.path
    import python_data

# Modules the tests may get by the name the candidate imported them under: the standard library's.
STANDARD_MODULES = frozenset(getattr(sys, "stdlib_module_names", ())) or frozenset(
    ("math", "re", "sys", "collections", "itertools", "functools", "heapq", "bisect", "string", "operator"))
QUIET_MODULES = frozenset(("antigravity", "this", "turtle", "tkinter", "idlelib", "webbrowser", "__hello__"))
ANSWER_FIELDS = ({"nonce", "ok"}, {"nonce", "error"})  # an answer's fields, the nonce first (python_sandbox.serve)


class Ended(Exception):
    """The sandbox ended, or answered what is not an answer: the run is over."""


class Decided(BaseException):
    """An outcome that stands whatever the test code catches: a syntax error, memory, a refusal."""

    def __init__(self, kind, detail):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class CandidateError(Exception):
    """An exception of the candidate's whose type has no namesake among the builtins."""


class Sandbox:
    """The judge's end of the pipes to the sandboxed candidate: one request, one answer, nothing else.

    The candidate's process writes the answers, so it could write lines of its own. Each request
    carries a nonce drawn here (the sandbox sees it only once the request is sent), and an answer
    counts only if it is the next line, an object with that nonce and "ok" or "error" and nothing
    else. So a line written before the request, a second line, a part of a line, or one that
    answers another request is read in place of the next answer and ends the run; `finish` makes
    a last round trip and then requires the end of the channel, so the last answer is no exception.
    """

    def __init__(self, request_fd, reply_fd, reply_limit):
        self.requests = os.fdopen(request_fd, "wb")
        self.replies = os.fdopen(reply_fd, "rb")
        self.reply_limit = reply_limit
        self.remotes = {}  # number -> Remote, so that one object of the candidate's is one Remote here
        self.decided = None  # the first Decided outcome; raised again on every later request
        self.ended = None  # the first Ended: the channel is broken, for good, whatever the tests catch

    def ask(self, op, **fields):
        if self.decided is not None:
            raise self.decided
        if self.ended is not None:
            raise self.ended
        nonce = secrets.token_hex(16)
        try:
            return self.value(self.exchange(dict(fields, op=op, nonce=nonce), nonce))
        except Ended as ended:
            self.ended = ended
            raise

    def exchange(self, request, nonce):
        """Send one request; the next line, as the object answering it."""
        try:
            self.requests.write((json.dumps(request, allow_nan=True) + "\n").encode())
            self.requests.flush()
        except OSError:
            raise Ended("the sandbox ended") from None
        line = self.replies.readline(self.reply_limit + 1)
        if not line.endswith(b"\n"):
            raise Ended("the sandbox ended" if not line else f"the sandbox's answer is over {self.reply_limit} bytes")
        try:
            reply = json.loads(line)
            # Exactly the line the sandbox's loop writes for it: not a byte before, after or between.
            answers = (type(reply) is dict and reply.get("nonce") == nonce and set(reply) in ANSWER_FIELDS
                       and line == (json.dumps(reply, allow_nan=True) + "\n").encode())
        except (ValueError, RecursionError):
            answers = False
        if not answers:
            raise Ended(f"the sandbox's channel holds a line that is not the answer to its {request['op']!r} request")
        return reply

    def value(self, reply):
        """The value in a reply, or the candidate's exception raised here."""
        try:
            if "ok" in reply:
                return python_data.decode(reply["ok"], 0, self.remote)
            error = reply["error"]
            if type(error) is not dict:
                raise ValueError("not an object")
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise Ended(f"the sandbox's answer is not plain data ({error})") from None
        raise self.candidate_error(error)

    def finish(self):
        """After the tests: one last round trip, then the end of the channel, with not a byte more.

        Returns once every process holding the sandbox's end has ended (the runner's namespace and
        process group go with it), so that a process which answered and then died, hung or left
        bytes behind is a failed run."""
        self.ask("finish")
        self.requests.close()
        if self.replies.read(1):
            self.ended = Ended("the sandbox wrote past its last answer")
            raise self.ended

    def candidate_error(self, error):
        """The candidate's exception, rebuilt here as a builtin exception of the same name where one exists."""
        name, message = str(error.get("type")), str(error.get("message"))
        detail = f"{name}: {message}" if message else name
        if name == "MemoryError" or error.get("memory") is True:  # numpy's is a subclass
            self.decided = Decided("memory", "MemoryError")
        elif name == "SandboxViolation":
            self.decided = Decided("forbidden", detail)
        elif error.get("compile") is True:
            self.decided = Decided("syntax_error", detail)
        if self.decided is not None:
            return self.decided
        kind = getattr(builtins, name, None)
        rebuilt = None
        if isinstance(kind, type) and issubclass(kind, Exception) and name not in ("StopIteration", "StopAsyncIteration"):
            try:
                args = python_data.decode(error.get("args"))
                rebuilt = kind(*args) if type(args) is tuple else kind(message)
            except Exception:
                rebuilt = None
        rebuilt = rebuilt if rebuilt is not None else CandidateError(message)
        rebuilt.candidate_type, rebuilt.candidate_line = name, str(error.get("line") or "")
        return rebuilt

    def remote(self, number):
        if number not in self.remotes:
            self.remotes[number] = Remote(self, number)
        return self.remotes[number]

    def encode(self, value):
        """`value` as data for the sandbox; a Remote goes back as its number."""
        def other(part):
            if type(part) is Remote and object.__getattribute__(part, "_sandbox") is self:
                return object.__getattribute__(part, "_number")
            raise python_data.NotData(f"the tests passed the candidate a {type(part).__name__}, which is not data")
        return python_data.encode(value, 0, other)


class Remote:
    """One of the candidate's objects that is not data: calls and attributes go to the sandbox."""

    __slots__ = ("_number", "_sandbox")

    def __init__(self, sandbox, number):
        object.__setattr__(self, "_sandbox", sandbox)
        object.__setattr__(self, "_number", number)

    def __call__(self, *args, **kwargs):
        sandbox = object.__getattribute__(self, "_sandbox")
        return sandbox.ask("call", target=object.__getattribute__(self, "_number"),
                           args=sandbox.encode(args), kwargs=sandbox.encode(kwargs))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return object.__getattribute__(self, "_sandbox").ask("getattr", target=object.__getattribute__(self, "_number"),
                                                             name=name)

    def __setattr__(self, name, value):
        sandbox = object.__getattribute__(self, "_sandbox")
        sandbox.ask("setattr", target=object.__getattribute__(self, "_number"), name=name, value=sandbox.encode(value))

    def _convert(self, into):
        """bool(), len() or list() of the object, worked out by the sandbox: a value, like any answer."""
        return object.__getattribute__(self, "_sandbox").ask("convert", target=object.__getattribute__(self, "_number"),
                                                             into=into)

    def __bool__(self):
        return self._convert("bool") is True

    def __len__(self):
        return self._convert("len")

    def __iter__(self):
        return iter(self._convert("list"))

    def _refuse(self, *args):
        raise TypeError("the candidate gave an object, not a value: it cannot be compared or hashed")

    # A comparison made by the candidate's own code is what an always-equal object games: refused.
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __contains__ = _refuse

    def __repr__(self):
        return "<an object of the candidate's>"


# --- The checks ----------------------------------------------------------------------------------


class Stage:
    """Where the check is, for the verdict's detail, and the test code's sources, to quote a failing line."""

    def __init__(self):
        self.name = "the candidate"
        self.sources = {}


def judge(check, sandbox):
    """Run the check's tests against the sandboxed candidate; (kind, detail)."""
    stage = Stage()
    try:
        if check["code_context"] is None:
            run_tests(check, sandbox, stage)
        else:
            run_code_context(check, sandbox, stage)
        if sandbox.decided is not None:  # the tests caught it; it stands
            raise sandbox.decided
        stage.name = "the end of the run"
        sandbox.finish()
        return "correct", ""
    except Decided as decided:
        return judge_decided(decided, stage)
    except Ended as ended:
        return "ended", f"{ended} (in {stage.name})"
    except BaseException as error:
        if sandbox.decided is not None:
            return judge_decided(sandbox.decided, stage)
        if sandbox.ended is not None:  # the tests caught it; it stands too
            return "ended", f"{sandbox.ended} (in {stage.name})"
        kind = "wrong_result" if stage.name != "the candidate" and isinstance(error, AssertionError) else "runtime_error"
        return kind, explain(kind, stage, error)


def judge_decided(decided, stage):
    return decided.kind, f"{decided.detail} (in {stage.name})" if decided.kind == "memory" else decided.detail


def run_tests(check, sandbox, stage):
    """MBPP and HumanEval: load the candidate there, then run the setup, the tests and `check(...)` here;
    returns if they all ran without an exception."""
    sources = {"<setup>": check["setup"]}
    for number, test in enumerate(check["tests"], 1):
        sources[f"<test {number}>"] = test
    if check["entry_point"]:
        sources["<check>"] = "check({})".format(check["entry_point"])
    compiled = {name: compile(source, name, "exec", dont_inherit=True, optimize=0) for name, source in sources.items()}
    stage.sources = sources
    loaded = sandbox.ask("load", code=check["candidate"], setup=check["setup"],
                         names=sorted(names_used(compiled.values())))
    namespace = {"__name__": "__judge__"}
    for name, module in loaded["modules"].items():
        if module.split(".")[0] in STANDARD_MODULES - QUIET_MODULES:
            namespace[name] = importlib.import_module(module)
    for name, value in loaded["values"].items():  # never a builtin's or a module's name: `len`, `math` stay the judge's
        if name == check["entry_point"] or not (hasattr(builtins, name) or name in STANDARD_MODULES):
            namespace[name] = value
    for name, code in compiled.items():
        if sandbox.decided is not None:
            raise sandbox.decided
        stage.name = {"<setup>": "the setup code", "<check>": sources.get("<check>")}.get(name, name.strip("<>"))
        exec(code, namespace)


def names_used(codes):
    """Every global name the compiled test code reads (its functions' included)."""
    names, pending = set(), list(codes)
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending.extend(const for const in code.co_consts if hasattr(const, "co_names"))
    return names


def run_code_context(check, sandbox, stage):
    """DS-1000: run the code_context here, with `exec` sending each program to the sandbox; returns if
    test_execution (and test_string) ran without an exception."""
    stage.name, stage.sources = "the code_context", {"<code_context>": check["code_context"]}
    context = {"__name__": "__code_context__"}

    from_the_candidate = set()  # files the judge wrote for the candidate; the tests' own are never overwritten

    def sandboxed_exec(code, env=None, *rest):
        if not isinstance(code, str) or not isinstance(env, dict) or rest:
            raise TypeError("DS-1000's test code runs a program as exec(code, test_env)")
        sent = {name: value for name, value in env.items() if not name.startswith("__")}
        answer = sandbox.ask("exec", code=code, env=sandbox.encode(sent))
        env.update(answer["variables"])
        for name, content in answer["files"].items():  # e.g. the plot the program saved, for the test to read
            if os.path.basename(name) != name or name.startswith(".") or type(content) is not bytes:
                continue
            if os.path.exists(name) and name not in from_the_candidate:
                continue  # e.g. the expected plot, which the test drew itself
            from_the_candidate.add(name)
            with open(name, "wb") as file:
                file.write(content)

    context["exec"] = sandboxed_exec
    exec(compile(check["code_context"], "<code_context>", "exec", dont_inherit=True), context)
    template = context.get("exec_context")
    if isinstance(template, str) and "[insert]" in template:  # DS-1000 inserts the solution there
        sandbox.ask("compile", code=template.replace("[insert]", check["candidate"]))
    stage.name = "test_execution"
    context["test_execution"](check["candidate"])
    if "test_string" in context:
        stage.name = "test_string"
        context["test_string"](check["candidate"])


def explain(kind, stage, error):
    """One line on what went wrong (the caller shortens it)."""
    try:
        message = str(error)[:500]
    except Exception:
        message = "(unprintable)"
    name = getattr(error, "candidate_type", type(error).__name__)
    text = f"{name}: {message}" if message else name
    line = getattr(error, "candidate_line", "") or failing_line(error, stage.sources)
    if kind == "wrong_result":
        return f"{stage.name} failed: {line or text}" + (f" ({message})" if line and message else "")
    return f"{text} (in {stage.name}{', at: ' + line if line else ''})"


def failing_line(error, sources):
    """The deepest line of the setup, test or code_context code in the traceback."""
    line, traceback = "", error.__traceback__
    while traceback is not None:
        lines = sources.get(traceback.tb_frame.f_code.co_filename, "").splitlines()
        if 0 < traceback.tb_lineno <= len(lines):
            line = lines[traceback.tb_lineno - 1].strip()
        traceback = traceback.tb_next
    return line


def main():
    job = json.loads(sys.stdin.buffer.read())
    for limit, value in ((resource.RLIMIT_AS, job["memory_bytes"]), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_CPU, job["cpu_s"])):
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [path for path in job["module_path"] if path not in ("", ".", here)]  # started without site (-S)
    sandbox = Sandbox(job["request_fd"], job["reply_fd"], job["reply_limit_bytes"])
    kind, detail = judge(job["check"], sandbox)
    os.write(job["result_fd"], (json.dumps({"kind": kind, "detail": detail}) + "\n").encode())
    os._exit(0)  # the pipes close: the sandbox's runner sees the end of the requests and exits


if __name__ == "__main__":
    main()
