"""Run a function as the unprivileged user 'nobody', for tests of permission errors.

Tests run as root here, and permission bits do not stop root. A forked child
that drops to 'nobody' (``os.setgid``/``os.setuid``) meets the kernel's real
refusals. Import (and warm up) what the function needs before calling: 'nobody'
may not be able to read the Python installation.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Callable

import pytest

__all__ = ["as_nobody", "needs_root", "open_folder"]


def as_nobody(fn: Callable[[], object]) -> str:
    """Run ``fn()`` in a child as 'nobody'; return 'ok <repr of result>' or '<Error>: <message>'."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                out = f"ok {fn()!r}"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # noqa: BLE001
            out = f"SETUP {type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os.close(w)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


needs_root = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(os, "geteuid") or os.geteuid() != 0
    or not any(u.pw_name == "nobody" for u in pwd.getpwall()),
    reason="dropping privileges needs root and a 'nobody' user")


@pytest.fixture
def open_folder(tmp_path_factory):
    """A folder 'nobody' can enter (pytest's tmp_path is private to root)."""
    d = Path(tmp_path_factory.mktemp("perm"))
    for p in [d, *d.parents]:
        if str(p) in ("/", "/tmp"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)
