#!/usr/bin/env python3
"""Runs every chorus-perf command of README.md and docs/*.md, so that the flags the docs show
cannot drift from the tool again (they did once: -t and -a changed meaning).

    perf_commands.py <repo root> <chorus-perf> [--list]

A command is a `chorus-perf` (or a path ending in it) in command position -- at the start
of a line or an inline code span, after environment assignments, or after `chorusrun
[OPTIONS] [--]` -- in a ```sh block (backslash continuations joined) or an inline `code`
span. Its arguments (and its environment assignments, unless one takes a shell variable)
run as written, with these appended to keep the run short (a flag given
twice takes its last value, as in nccl-tests): `-b 8 -e 4K -f 4 -n 2 -w 1 -N 1`, `--rounds
1` with --compare, and `--np K` for `chorusrun -n K`. Shell variables take the values of
the loops around them in the docs (C: all_reduce, N: 2, A: automatic); files a command
writes land in a scratch directory, one per document, so that a later command of the same
document reads them (--calibrate FILE, then --profile FILE). A command passes when it exits
0 and its output ends with nccl-tests' closing lines (a --calibrate run: says what it
wrote); a transport this build lacks (ucx, nccl) makes it a skip,
said as such. Exit status: 0 when every command passed or was skipped, 1 otherwise.
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

VARIABLES = {"C": "all_reduce", "N": "2", "A": "automatic"}
SHORT = ["-b", "8", "-e", "4K", "-f", "4", "-n", "2", "-w", "1", "-N", "1"]
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
STOP = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1"}


def commands_in(text):
    """(line, text) of every candidate command line: sh blocks and inline spans."""
    for m in SH_BLOCK.finditer(text):
        first = text.count("\n", 0, m.start()) + 2
        joined, start = "", None
        for i, line in enumerate(m.group(1).splitlines()):
            if start is None:
                start = first + i
            joined += line.rstrip("\\").rstrip() + " "
            if not line.rstrip().endswith("\\"):
                yield start, joined.split(" #", 1)[0] if not joined.startswith("#") else ""
                joined, start = "", None
    outside = SH_BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in INLINE.finditer(outside):
        if m.group(1).count("\n") <= 2:  # a span may wrap; a stray backtick must not pair
            yield text.count("\n", 0, m.start()) + 1, " " + m.group(1).replace("\n", " ")


def perf_arguments(line, inline):
    """The arguments of a chorus-perf in command position, its chorusrun -n, or None. An
    inline span that only names the tool is not a command."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        return None
    i, np, env = 0, None, {}
    while i < len(tokens) and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[i]):
        name, value = tokens[i].split("=", 1)  # environment assignments
        env[name] = value
        i += 1
    if any("$" in value for value in env.values()):
        env = {}  # a loop's variables (RANK=$r ...): one process, as if none were given
    if i < len(tokens) and os.path.basename(tokens[i]) == "chorusrun":
        i += 1
        while i < len(tokens) and tokens[i].startswith("-"):
            if tokens[i] == "--":
                i += 1
                break
            if tokens[i] in ("-n", "--np"):
                np = tokens[i + 1] if i + 1 < len(tokens) else None
                i += 2
            else:
                i += 1
    if i >= len(tokens) or os.path.basename(tokens[i]) != "chorus-perf":
        return None
    args = []
    for t in tokens[i + 1:]:
        if t in STOP or t.startswith(">") or t.startswith("2>"):
            break
        args.append(t)
    if any(a in ("...", "ARGS...") for a in args) or (inline and not args):
        return None  # a pattern or a name, not a command
    return args, np, env


def expand(args):
    def value(m):
        if m.group(1) not in VARIABLES:
            raise KeyError(m.group(1))
        return VARIABLES[m.group(1)]
    return [re.sub(r"\$\{?([A-Za-z_]+)\}?", value, a) for a in args]


def main():
    root, perf = pathlib.Path(sys.argv[1]), os.path.abspath(sys.argv[2])
    listing = "--list" in sys.argv[3:]
    docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    failed, counts = [], {"passed": 0, "skipped": 0}
    for doc in docs:
        rel = doc.relative_to(root).as_posix()
        with tempfile.TemporaryDirectory(prefix="chorus-doc-perf-") as scratch:
            run_document(doc, rel, perf, listing, scratch, failed, counts)
    passed, skipped = counts["passed"], counts["skipped"]
    if listing:
        return 0
    for f in failed:
        print(f"FAILED  {f}")
    print(f"{passed} documented chorus-perf commands ran, {skipped} skipped, "
          f"{len(failed)} failed")
    return 1 if failed or passed == 0 else 0


def run_document(doc, rel, perf, listing, cwd, failed, counts):
    """Runs the commands of one document, in order, in the scratch directory `cwd`."""
    for line, text in commands_in(doc.read_text()):
        found = perf_arguments(text.strip(), text.startswith(" "))
        if found is None:
            continue
        args, np, env = found
        where = f"{rel}:{line}"
        try:
            args = expand(args)
        except KeyError as e:
            failed.append(f"{where}: ${e.args[0]} has no value in perf_commands.py")
            continue
        run = [perf] + args + SHORT
        if "--compare" in args:
            run += ["--rounds", "1"]
        if np is not None and "--np" not in args:
            run += ["--np", np]
        if listing:
            print(f"{where}: {shlex.join(run[1:])}")
            continue
        r = subprocess.run(run, cwd=cwd, capture_output=True, text=True, timeout=300,
                           env={**os.environ, **env})
        said = (r.stdout + r.stderr).strip()
        if r.returncode == 2 and "was built without" in r.stderr:
            counts["skipped"] += 1
            print(f"skipped {where}: {r.stderr.strip()}")
        elif r.returncode == 1 and "needs a CUDA device" in r.stderr:
            counts["skipped"] += 1
            print(f"skipped {where}: no GPU here")
        elif r.returncode == 0 and ("# Out of bounds values : 0 OK" in r.stdout
                                    or "#wrong over all rounds and ranks" in r.stdout
                                    or ("--calibrate" in args and "# written to" in r.stdout)):
            counts["passed"] += 1
            print(f"passed  {where}: chorus-perf {shlex.join(args)}")
        else:
            tail = "\n    ".join(said.splitlines()[-6:])
            failed.append(f"{where}: chorus-perf {shlex.join(args)} (exit {r.returncode}):"
                          f"\n    {tail}")


if __name__ == "__main__":
    sys.exit(main())
