#!/usr/bin/env python3
"""Extracts the C++ snippets of README.md and docs/*.md for the docs.snippets tests.

    extract_snippets.py <repo root> <output dir>

Every ```cpp block must be one of three kinds, or the script fails naming it:

  * a program (it defines `int main`): written to <out>/<name>.cpp as it is; built and
    run by tests/docs/CMakeLists.txt (under chorusrun when it calls from_env, under
    mpiexec when it calls mpi_world);
  * a fragment: the line before its fence is `<!-- snippet: fragment(PARAMETERS) -->`;
    the block becomes the body of `void snippet(PARAMETERS)` after
    chorus's umbrella headers (its own #include lines are hoisted above), one
    function per block, each document's blocks in a namespace of their own: they are
    compiled, never run. The documents share one file (fragments.cpp; those that include
    UCX's transport ucx_fragments.cpp, built only where chorus::ucx is), since a file's
    compile time is mostly chorus's headers;
  * definitions: `<!-- snippet: definitions -->`: declarations and functions, compiled at
    namespace scope in the namespace of the document's fragments;
  * not compiled: `<!-- snippet: not compiled (REASON) -->` before its fence, for
    signatures and excerpts that need a GPU compiler or a whole example around them;
    REASON must name why, and is printed.

Writes <out>/snippets.cmake: set(DOC_PROGRAMS name;...), set(DOC_FRAGMENTS name;...), and
for each program DOC_RUN_<name> (plain, chorusrun, mpiexec) and DOC_LINK_<name> (chorus,
compiled, mpi). Only files whose content changed are rewritten.
"""
import pathlib
import re
import sys

FENCE = re.compile(r"^```cpp\n(.*?)^```", re.S | re.M)
NOTE = re.compile(r"^<!-- snippet: (fragment\((.*)\)|not compiled \((.+)\)|definitions) -->$")


def write(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main() -> int:
    root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    programs, skipped, problems = [], [], []
    fragments = {"fragments": ([], []), "ucx_fragments": ([], [])}  # name: (includes, code)
    cmake = []
    for doc in docs:
        text = doc.read_text()
        rel = doc.relative_to(root).as_posix()
        stem = re.sub(r"[^A-Za-z0-9]+", "_", doc.stem.lower())
        functions, includes = [], []
        for m in FENCE.finditer(text):
            body = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").splitlines()
            note = NOTE.match(before[-1]) if before else None
            where = f"{rel}:{line}"
            if re.search(r"\bint main\s*\(", body):
                name = f"{stem}_{line}"
                programs.append(name)
                write(out / f"{name}.cpp", f"// {where}\n{body}")
                run = "plain"
                if "from_env" in body:
                    run = "chorusrun"
                if "mpi_world" in body:
                    run = "mpiexec"
                link = "chorus"
                if "chorus/compiled.hpp" in body:
                    link = "compiled"
                elif "chorus/bootstrap/mpi.hpp" in body:
                    link = "mpi"
                cmake.append(f"set(DOC_RUN_{name} {run})\nset(DOC_LINK_{name} {link})\n")
                cmake.append(f'set(DOC_WHERE_{name} "{where}")\n')
            elif note and (note.group(2) is not None or note.group(1) == "definitions"):
                code = []
                for l in body.splitlines():
                    (includes if l.startswith("#include") else code).append(l)
                code = "\n".join(code)
                if note.group(2) is not None:  # a fragment: the body of a function
                    code = (f"[[maybe_unused]] void snippet_{len(functions)}({note.group(2)}) "
                            f"{{\n{code}\n}}")
                functions.append(f"// {where}\n{code}\n")
            elif note and note.group(3):
                skipped.append(f"{where}: not compiled ({note.group(3)})")
            else:
                problems.append(
                    f"{where}: a ```cpp block that is neither a program (int main) nor marked: "
                    "put `<!-- snippet: fragment(PARAMETERS) -->` (compiled as a function body "
                    "with those parameters) or `<!-- snippet: not compiled (REASON) -->` on the "
                    "line before its fence")
        if functions:
            group = "ucx_fragments" if "#include <chorus/transport/ucx.hpp>" in includes \
                else "fragments"
            fragments[group][0].extend(includes)
            fragments[group][1].append(f"// The fragments of {rel}\nnamespace doc_{stem} {{\n\n"
                                       + "\n".join(functions) + f"\n}}  // namespace doc_{stem}\n")
    written = []
    for name, (includes, code) in fragments.items():
        if not code:
            continue
        written.append(name)
        head = ["#include <chorus/chorus.hpp>", "#include <chorus/compress/compress.hpp>",
                "#include <chorus/zero/zero.hpp>"] + sorted(set(includes))
        prelude = ("\n".join(head) + "\n\n#include <cstdio>\n#include <span>\n"
                   "#include <stdexcept>\n#include <vector>\n\n"
                   "using namespace std::chrono_literals;\n\nnamespace {\n\n")
        write(out / f"{name}.cpp", "// The fragments of README.md and docs/*.md\n" + prelude
              + "\n".join(code) + "\n}  // namespace\n")
    for p in problems:
        print(f"extract_snippets: {p}", file=sys.stderr)
    if problems:
        return 1
    for s in skipped:
        print(f"-- docs.snippets: {s}")
    cmake.insert(0, f"set(DOC_PROGRAMS {';'.join(programs)})\n"
                    f"set(DOC_FRAGMENTS {';'.join(written)})\n")
    write(out / "snippets.cmake", "".join(cmake))
    return 0


if __name__ == "__main__":
    sys.exit(main())
