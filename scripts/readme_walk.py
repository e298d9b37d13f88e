#!/usr/bin/env python3
"""Walk README.md and --help as a new user would, in the checkout this runs in (a fresh clone;
scripts/quickstart.sh calls it after the quick start, as root and as an ordinary user).

1. Every ```sh block of README.md, in order, as one bash script each (set -euo pipefail), from
   the project root, again from a subdirectory (src/), and from a folder outside the project
   with AIDOCK_PROJECT_DIR naming it: settings, migrations and the local cluster must be found
   from each. A block is left out only when the line before its fence
   is `<!-- walk: skip: REASON -->`, and the reason is printed.
2. Every example line of every command's --help (under `Example:`, `Examples:` or
   `Install (one of):`), from the project root.

`aidock-provision` must be on PATH (the quick start's `cargo run --release` built it). HOME is a
scratch directory, so examples that install completions or man pages write there. A failing
example fails the walk, naming it. The user's world outside this project is a sibling
`Back/alembic/versions` (the AI Dock backend's Alembic), made here if missing, and the backend's
models with its venv active: `examples/backend` on PYTHONPATH (`app.models:Base`) and VIRTUAL_ENV
the one with SQLAlchemy (as given, else /opt/aidock-alembic, which .ci/run makes).
"""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.getcwd()
FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(path):
    """(first line number, text, skip reason or None) of every ```sh block."""
    lines = open(path, encoding="utf-8").read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        if lang != "sh":
            continue
        before = next((l for l in reversed(lines[:start]) if l.strip()), "")
        skip = re.match(r"<!--\s*walk:\s*skip:\s*(.*?)\s*-->", before)
        blocks.append((start + 1, "\n".join(body), skip.group(1) if skip else None))
    return blocks


def commands(path=()):
    """Every command path, from `--help`'s Commands: list, recursively."""
    out = run_capture(["aidock-provision", *path, "--help"])
    found = [path]
    in_list = False
    for line in out.splitlines():
        if line.startswith("Commands:"):
            in_list = True
            continue
        if in_list:
            m = re.match(r"^  ([a-z][a-z-]*)\s", line)
            if not m:
                if not line.strip() or not line.startswith(" "):
                    in_list = False
                continue
            if m.group(1) != "help":
                found.extend(commands((*path, m.group(1))))
    return found


def help_examples(path):
    out = run_capture(["aidock-provision", *path, "--help"])
    examples, in_section = [], False
    for line in out.splitlines():
        if re.match(r"^(Examples?|Install \(one of\)):", line):
            in_section = True
            rest = line.split(":", 1)[1].strip()
            if "aidock-provision" in rest:
                examples.append(rest)
            continue
        if in_section and line.startswith("  "):
            if "aidock-provision" in line:
                examples.append(line.strip())
            continue
        in_section = False
    return examples


def run_capture(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=ENV).stdout


def run(script, cwd, what, extra=None):
    print(f"walk: {what} (in {os.path.relpath(cwd, ROOT) if cwd != ROOT else 'the project root'})")
    for line in script.splitlines():
        print(f"  $ {line}")
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env=dict(ENV, **(extra or {})),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        sys.exit(f"walk: {what} failed (exit {done.returncode}) in {cwd}")


home = tempfile.mkdtemp(prefix="aidock-walk-home-")
real_home = os.path.expanduser("~")
ENV = dict(
    os.environ,
    HOME=home,
    MANPAGER="cat",
    PAGER="cat",
    # The toolchain stays where it is, whatever HOME says.
    RUSTUP_HOME=os.environ.get("RUSTUP_HOME", os.path.join(real_home, ".rustup")),
    CARGO_HOME=os.environ.get("CARGO_HOME", os.path.join(real_home, ".cargo")),
)
ENV["PYTHONPATH"] = os.pathsep.join(
    p for p in [os.path.join(ROOT, "examples", "backend"), os.environ.get("PYTHONPATH")] if p
)
if not ENV.get("VIRTUAL_ENV"):
    ENV["VIRTUAL_ENV"] = "/opt/aidock-alembic"
if not os.access(os.path.join(ENV["VIRTUAL_ENV"], "bin", "python"), os.X_OK):
    sys.exit(
        f"walk: the backend's venv {ENV['VIRTUAL_ENV']} (with SQLAlchemy) is missing: "
        "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install sqlalchemy "
        "(.ci/run does), or set VIRTUAL_ENV"
    )
os.makedirs(os.path.join(os.path.dirname(ROOT), "Back", "alembic", "versions"), exist_ok=True)
os.makedirs(os.path.join(ROOT, "Back", "alembic", "versions"), exist_ok=True)

blocks = readme_blocks(os.path.join(ROOT, "README.md"))
# From a folder outside the project too, naming it as another repository would
# (AIDOCK_PROJECT_DIR): the backend's, running the pytest plugin.
outside = tempfile.mkdtemp(prefix="aidock-walk-outside-")
os.makedirs(os.path.join(os.path.dirname(outside), "Back", "alembic", "versions"), exist_ok=True)
for where, extra in [(ROOT, {}), (os.path.join(ROOT, "src"), {}), (outside, {"AIDOCK_PROJECT_DIR": ROOT})]:
    for line, text, skip in blocks:
        if skip:
            print(f"walk: README.md:{line} left out: {skip}")
            continue
        if where == outside and re.search(r"(^|[\s;&|(])(cargo|scripts/)", text):
            # Building and the repository's scripts are the checkout's business.
            print(f"walk: README.md:{line} left out outside the project: it runs cargo or scripts/ of the checkout")
            continue
        run(text, where, f"README.md:{line}", extra)
for path in commands():
    for example in help_examples(path):
        run(example, ROOT, f"`aidock-provision {' '.join(path)} --help` example")
print(f"walk: every README block and --help example ran ({len(blocks)} blocks)")
