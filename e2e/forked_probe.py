"""`python -m e2e.forked_probe CODE`: prints what a process sees of where it runs (for e2e/test_forked.py) as one
JSON line on stdout and one line on stderr, then exits with CODE, or by the signal named (`SIGTERM`)."""

from __future__ import annotations

import json
import os
import signal
import sys

if __name__ == "__main__":
    seen = {
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "env": {name: value for name, value in os.environ.items() if name.startswith("PROBE_")},
        "path": sys.path,
        "stdin": sys.stdin.read(),
    }
    print(json.dumps(seen))
    print("to stderr", file=sys.stderr)
    how = sys.argv[1]
    if how.startswith("SIG"):
        sys.stdout.flush()
        os.kill(os.getpid(), getattr(signal, how))
    raise SystemExit(int(how))
