"""Runs a command on a real pseudo-terminal and plays a script against it, for tests of
interactive programs (line editing, raw-mode Ctrl-C) that pipes cannot exercise.

    python3 pty_driver.py '<steps JSON>' CMD ARG...

Steps: {"send": "text"} writes keystrokes; {"expect": "regex", "timeout": s} waits until the
output since the previous expect matches (ANSI escapes kept; the regex sees them). Prints one JSON
object: {"exit": code or null, "transcript": all output, "error": null or what went wrong}.
"""

import json
import os
import pty
import re
import select
import sys
import time


def main() -> None:
    steps = json.loads(sys.argv[1])
    cmd = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    transcript = b""
    mark = 0
    error = None

    def pump(deadline: float) -> bool:
        """Reads what is available until the deadline; False once the child closed the terminal."""
        nonlocal transcript
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            ready, _, _ = select.select([fd], [], [], min(left, 0.05))
            if not ready:
                return True
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            transcript += data

    for step in steps:
        if "send" in step:
            os.write(fd, step["send"].encode())
            continue
        pattern = re.compile(step["expect"].encode(), re.S)
        deadline = time.monotonic() + step.get("timeout", 20)
        found = None
        alive = True
        while found is None and time.monotonic() < deadline:
            found = pattern.search(transcript, mark)
            if found is None:
                if not alive:
                    break
                alive = pump(min(deadline, time.monotonic() + 0.1))
        if found is None:
            error = f"timed out waiting for {step['expect']!r}"
            break
        mark = found.end()

    code = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        pump(time.monotonic() + 0.1)
    if code is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        error = error or "the program did not exit"
    try:
        pump(time.monotonic() + 0.2)
    except OSError:
        pass
    print(json.dumps({"exit": code, "transcript": transcript.decode("utf-8", "replace"), "error": error}))


main()
