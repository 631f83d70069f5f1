"""pytest wiring for the differential harness (tests/overlay.py).

- The whole session runs in a private mount namespace: `make test` starts pytest under
  `unshare -m --propagation private`; when pytest is started some other way as root and "/" is a
  shared mount, pytest_configure unshares by itself, so no mount can leak to the host either way.
- `harness` (session): the checked environment; a missing test user, /dev/fuse not 0666, a stale
  cowfs install ... fail every test that needs it, loudly, with the reason. Never skipped.
- `overlay_pair` (function): factory for overlay.Pair; closes and checks every pair it made.
- Lowers are checked for writes inside Pair, after every test and at the end of every module.
"""
from __future__ import annotations

import ctypes
import os
import stat

import pytest

import overlay

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _root_is_shared() -> bool:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == "/":
                return any(p.startswith("shared:") for p in parts[6:parts.index("-")])
    return False


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0 or os.environ.get("COWFS_TEST_NO_UNSHARE") == "1":
        return
    if not _root_is_shared():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE,
                                                    None) != 0:
        raise pytest.UsageError("cannot enter a private mount namespace (errno "
                                f"{ctypes.get_errno()}): run the tests through `make test`")


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        fuse = format(stat.S_IMODE(os.stat("/dev/fuse").st_mode), "04o")
    except OSError:
        fuse = "missing"
    return [f"cowfs harness: impl={overlay.IMPL} user={overlay.TEST_USER} /dev/fuse={fuse} "
            f"euid={os.geteuid()}"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    overlay.cleanup_session()


@pytest.fixture(scope="session")
def harness() -> overlay.Env:
    try:
        return overlay.env()
    except overlay.HarnessError as e:
        reason = str(e)
    pytest.fail(f"cowfs test environment unusable: {reason}", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _module_lowers_untouched(request: pytest.FixtureRequest):
    """Every lower built during this module is re-hashed when the module ends; then the module's
    scratch dir goes (unless COWFS_TEST_KEEP=1)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    start = len(overlay.LOWERS)
    overlay.set_scratch(name)
    yield
    mine = [p for p, _, _ in overlay.LOWERS[start:]]
    try:
        overlay.check_lowers(mine)
    finally:
        del overlay.LOWERS[start:]
        scratch = overlay.scratch_path(name)
        if scratch and os.path.isdir(scratch) and not overlay.KEEP:
            overlay.rmtree_checked(scratch)
        overlay.set_scratch(None)


@pytest.fixture(autouse=True)
def _lowers_untouched(request: pytest.FixtureRequest):
    """Lowers alive across tests (module-level) before and after each test, and the lowers this
    test built, after it."""
    overlay.check_lowers(tag=None)
    overlay.CURRENT_TEST[0] = request.node.nodeid
    try:
        yield
    finally:
        overlay.CURRENT_TEST[0] = None
    overlay.check_lowers(tag=None)
    overlay.check_lowers(tag=request.node.nodeid)


@pytest.fixture
def overlay_pair(harness: overlay.Env, request: pytest.FixtureRequest):
    """overlay_pair(*lower_specs, upper=None, impl=None, upper_fs=None, lower_fs=None,
    kernel_opts=None, cowfs_opts=None) -> overlay.Pair (see overlay.py)."""
    pairs: list[overlay.Pair] = []

    def make(*lowers, upper=None, impl=None, upper_fs=None, lower_fs=None, kernel_opts=None,
             cowfs_opts=None) -> overlay.Pair:
        p = overlay.Pair(list(lowers), upper, impl=impl, name=request.node.name,
                         upper_fs=upper_fs, lower_fs=lower_fs, kernel_opts=kernel_opts,
                         cowfs_opts=cowfs_opts)
        pairs.append(p)
        return p

    yield make
    errors = []
    for p in pairs:
        try:
            p.close()
        except (overlay.HarnessError, AssertionError) as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)

