"Running the `kit` command line from tests: its output captured, and a check that it succeeded that shows what it said."
import subprocess
import sys
from pathlib import Path

KIT = str(Path(sys.executable).with_name('kit'))


def kit(*args, timeout=900) -> subprocess.CompletedProcess:
    "Run the kit command line; its result, text output captured."
    return subprocess.run([KIT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def ok(r) -> subprocess.CompletedProcess:
    "The command succeeded; else show what it said."
    assert r.returncode == 0, r.stderr[-3000:]
    return r
