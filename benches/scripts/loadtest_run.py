"""What the measurement scripts share beyond processes on loopback: the
release binaries, one `loadtest` run read back as its JSON report, and the
figures printed as a table (and written as JSON)."""

import json
import os
import re
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOADTEST = os.path.join(ROOT, "target/release/loadtest")
GATEWAY = os.path.join(ROOT, "target/release/gateway")


def run_loadtest(url, args):
    """Runs `loadtest --url URL --quiet ARGS` and returns its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([LOADTEST, "--url", url, "--quiet", "--json", out.name, *args],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        with open(out.name) as f:
            return json.load(f)


def print_table(figures, columns, first="case"):
    """One row per entry of `figures` (name → dict); `columns` are
    (heading, key, format spec with its width first), a missing figure
    printed as "-"."""
    width = max([len(first)] + [len(name) for name in figures]) + 1

    def cell(value, spec):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return format(value, spec)
        return "-".rjust(int(re.match(r"\d+", spec).group()))

    print(f"{first:<{width}}" + " ".join(
        h.rjust(int(re.match(r"\d+", s).group())) for h, _, s in columns))
    for name, f in figures.items():
        print(f"{name:<{width}}" + " ".join(cell(f.get(k), s) for _, k, s in columns))


def write_json(path, figures):
    if path:
        with open(path, "w") as f:
            json.dump(figures, f, indent=2)
