"""A local server in a child process: started on a free port, waited for, always stopped.

The child binds (port 0: any free port) and prints ``serving URL ...`` as its first line on stdout;
:func:`child_server` yields that URL once ``GET URL + ready_path`` answers, and stops the child on exit.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator


def get_json(url: str, timeout_s: float = 5.0) -> dict:
    """``GET url`` decoded as JSON (raises ``OSError`` when nothing answers)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


@contextmanager
def child_server(cmd: list[str], param: str, ready_path: str = "/models", timeout_s: float = 60.0,
                 stop_timeout_s: float = 10.0) -> Iterator[str]:
    """Run ``cmd``; yields the URL it prints once it answers ``ready_path``; terminates it on exit (killed
    after ``stop_timeout_s``). Fails within ``timeout_s`` with a message naming ``param``."""
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks on it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("serving "):
            proc.kill()
            proc.wait()
            errors.seek(0)
            raise RuntimeError(f"{param}: the server did not start: {(line + ' ' + errors.read()).strip()[-500:]}")
        url = line.split()[1]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                get_json(url + ready_path, timeout_s=2.0)
                break
            except OSError as e:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{param}: the server at {url} does not answer: {e}") from None
                time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        errors.close()
