"""Helpers of the application tests: run the command line, run the demo and dashboard servers."""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


#: Limit for one short command-line run in a subprocess (not a speed check).
CLI_TIMEOUT_S = 300


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m fourd_widgets.app ARGS`` in a subprocess, text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fourd_widgets.app", *args],
        capture_output=True, text=True, cwd=cwd, timeout=CLI_TIMEOUT_S,
    )


#: Limit for a server command to print its URL (sample data + server start; not a speed check).
DEMO_START_TIMEOUT_S = 300
#: Limit for the demo to exit after it is told to stop.
DEMO_STOP_TIMEOUT_S = 60
URL = re.compile(r"(http://127\.0\.0\.1:(\d+)/\S*\?token=(\S+))")
#: The line that says where the server logs (printed before the URL).
LOG = re.compile(r"^(?:Voila|JupyterLab) log: (\S+)$")


class AppProcess:
    """A running ``fourd-widgets COMMAND ... --no-browser --port P`` server and what it printed.

    Attributes
    ----------
    process : subprocess.Popen
    url, port, token
        From the URL line the command printed.
    log : Path or None
        The server's log file, from the line the command printed before the URL.
    """

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.log: Path | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "fourd_widgets.app", *args, "--no-browser", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=None if env is None else {**os.environ, **env},
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.url, self.port, self.token = self._wait_for_url()

    def _pump(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.put(line)
        self.lines.put("")  # end of output

    def _next_line(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        self.output.append(line)
        return line

    def _wait_for_url(self) -> tuple[str, int, str]:
        deadline = time.monotonic() + DEMO_START_TIMEOUT_S
        while True:
            try:
                line = self._next_line(max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError("the server printed no URL:\n" + "".join(self.output)) from None
            if line == "":
                self.stop()
                raise AssertionError("the server exited before printing a URL:\n" + "".join(self.output))
            logged = LOG.match(line.strip())
            if logged:
                self.log = Path(logged.group(1))
            match = URL.search(line)
            if match:
                return match.group(1), int(match.group(2)), match.group(3)

    def rest_outputs(self) -> str:
        """Everything printed after the URL, up to the end of output."""
        while True:
            try:
                if self._next_line(DEMO_STOP_TIMEOUT_S) == "":
                    break
            except queue.Empty:
                break
        return "".join(self.output)

    def signal(self, signum: int) -> int:
        """Send ``signum`` and wait for the command to exit; returns its status."""
        self.process.send_signal(signum)
        return self.process.wait(DEMO_STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Make sure the command is gone (SIGTERM, then kill)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(DEMO_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove_log(self) -> None:
        """Remove the server's private log folder (a user keeps it to read; a test has no use for it)."""
        if self.log is not None and self.log.parent.name.startswith("fourd-widgets-"):
            shutil.rmtree(self.log.parent, ignore_errors=True)


class DemoProcess(AppProcess):
    """A running ``fourd-widgets demo --dir FOLDER [OPTIONS] --no-browser``."""

    def __init__(self, folder: Path, port: int, *options: str, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        super().__init__(["demo", "--dir", str(folder), *options], port, env)


def port_is_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(probe, timeout: float, interval: float = 0.2):
    """Call ``probe()`` until it returns something truthy, and return that.

    Raises
    ------
    AssertionError
        If ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{getattr(probe, '__name__', probe)} gave nothing in {timeout} s")
        time.sleep(interval)
