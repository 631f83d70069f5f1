"""pytest plugin (entry point `pytest11: cowfs`): the `cow_mount` fixture.

    def test_cleanup_job(cow_mount):
        data = cow_mount("tests/data")        # a private copy-on-write view, no root needed
        run_cleanup_job(data)                 # may change, delete, rename anything below data
        assert not (data / "tmp").exists()    # ... while tests/data itself is never written

Loading the plugin adds this one fixture and nothing else: no hooks, nothing autouse, and no
pyfuse3 import (the mount is made by the `cowfs` CLI in a subprocess, see cowfs/api.py).
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .api import mounted


@pytest.fixture
def cow_mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: cow_mount(lower) -> Path of a writable copy-on-write view of LOWER (a directory,
    or a list of them, top first). The changes go to an upper under tmp_path (kept there for a
    look after a failure); every view is unmounted when the test ends."""
    with contextlib.ExitStack() as stack:
        numbers = itertools.count()

        def mount(lower: str | Path | Sequence[str | Path]) -> Path:
            base = tmp_path / f"cow_mount{next(numbers)}"
            (base / "upper").mkdir(parents=True)
            (base / "mnt").mkdir()
            return Path(stack.enter_context(
                mounted(lower, base / "upper", work=base / "work", mountpoint=base / "mnt")))

        yield mount
