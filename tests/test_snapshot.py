"""`cowfs snapshot build` and `cowfs verify`, run as subprocesses through the venv's `cowfs`.

Offline: the builds take the wheels of a throwaway project `tiny` (versions 1.0 and 2.0) that the
module builds itself with `pip wheel`, and the sdist of `tinysrc` (an in-tree build backend, so
pip builds it without fetching setuptools), through --find-links DIR --no-index. No FUSE mount.
"""
from __future__ import annotations

import hashlib
import io
import os
import pty
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from cowfs import manifest

COWFS = os.path.join(os.path.dirname(sys.executable), "cowfs")


def cowfs(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([COWFS, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, **kw)


def build(root: Path, wheels: Path, *requirements: str) -> subprocess.CompletedProcess:
    req = root.parent / f"{root.name}-requirements.txt"
    req.write_text("".join(f"{r}\n" for r in requirements))
    return cowfs("snapshot", "build", str(root), "--requirements", str(req),
                 "--find-links", str(wheels), "--no-index")


def current(root: Path) -> Path:
    return root / os.readlink(root / "current")


#: tinysrc's build backend: writes a wheel by hand, so the build needs nothing but the stdlib
TINYSRC_BACKEND = """\
import base64, hashlib, os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "tinysrc-1.0.dist-info"
    files = {"tinysrc/__init__.py": b"VERSION = '1.0'\\n",
             info + "/METADATA": b"Metadata-Version: 2.1\\nName: tinysrc\\nVersion: 1.0\\n",
             info + "/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    files[info + "/RECORD"] = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
        f"{len(d)}\\n" for p, d in files.items()).encode() + info.encode() + b"/RECORD,,\\n"
    name = "tinysrc-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return name
"""


def make_tinysrc_sdist(out: Path) -> None:
    members = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                          'backend-path = ["."]\n',
        "backend.py": TINYSRC_BACKEND,
        "PKG-INFO": "Metadata-Version: 2.1\nName: tinysrc\nVersion: 1.0\n",
    }
    with tarfile.open(out / "tinysrc-1.0.tar.gz", "w:gz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(f"tinysrc-1.0/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """A find-links dir: tiny-1.0 and tiny-2.0 wheels built from local projects, tinysrc sdist."""
    base = tmp_path_factory.mktemp("tiny")
    out = base / "wheels"
    for version in ("1.0", "2.0"):
        proj = base / f"tiny-{version}"
        (proj / "tiny").mkdir(parents=True)
        (proj / "tiny" / "__init__.py").write_text(f'VERSION = "{version}"\n')
        (proj / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "tiny"\nversion = "{version}"\n')
        # one call per version: pip refuses two versions of one project in one resolve
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--no-build-isolation", "--no-index", "--wheel-dir", str(out),
                        str(proj)], check=True, timeout=120)
    make_tinysrc_sdist(out)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory, wheels) -> tuple[Path, subprocess.CompletedProcess]:
    """ROOT with one snapshot of tiny==1.0 and tinysrc; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("snap") / "root"
    res = build(root, wheels, "tiny==1.0", "tinysrc")
    assert res.returncode == 0, res.stdout + res.stderr
    return root, res


@pytest.fixture
def snap_copy(built, tmp_path) -> Path:
    """A private copy of the built snapshot dir, modes kept (read-only dirs included)."""
    root, _ = built
    copy = tmp_path / "snap"
    shutil.copytree(current(root), copy, symlinks=True)
    return copy


def entries_below(top: Path) -> list[Path]:
    return sorted(top.rglob("*"))


# ---------------------------------------------------------------------------------------------
# build


def test_layout_modes_and_summary(built):
    root, res = built
    link = os.readlink(root / "current")
    assert link.startswith("snapshots/") and not os.path.isabs(link)
    snap = current(root)
    assert sorted(os.listdir(root / "snapshots")) == [snap.name]  # no .building-* left
    assert sorted(os.listdir(snap)) == ["MANIFEST", "MANIFEST.xxh3", "pip", "requirements.txt",
                                        "wheels"]
    assert (snap / "requirements.txt").read_text() == "tiny==1.0\ntinysrc\n"
    assert sorted(os.listdir(snap / "wheels")) == ["tiny-1.0-py3-none-any.whl",
                                                   "tinysrc-1.0-py3-none-any.whl"]
    # pip's own cache entry for the wheel it built from the sdist
    assert [p.name for p in (snap / "pip" / "wheels").rglob("*.whl")] == \
        ["tinysrc-1.0-py3-none-any.whl"]
    for p in [snap, *entries_below(snap)]:
        mode = os.lstat(p).st_mode
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), p
        assert stat.S_IMODE(mode) == (0o555 if stat.S_ISDIR(mode) else 0o444), p
    files = [p for p in entries_below(snap) if p.is_file() and not p.name.startswith("MANIFEST")]
    lines = res.stdout.splitlines()
    assert lines[-1].startswith(f"snapshot {snap}: {len(files)} files, ")
    assert len(lines) >= 4, "a progress line per step"


def test_manifest_lists_every_file_sorted(built):
    snap = current(built[0])
    text = (snap / "MANIFEST").read_text()
    lines = text.splitlines()
    assert lines[0] == manifest.HEADER.strip()
    paths = [line.split(" ")[3] for line in lines[1:]]
    assert paths == sorted(paths)
    assert set(paths) == {str(p.relative_to(snap)) for p in entries_below(snap)} - {
        "MANIFEST", "MANIFEST.xxh3"}
    import xxhash
    wheel = snap / "wheels" / "tiny-1.0-py3-none-any.whl"
    assert (f"{xxhash.xxh3_128_hexdigest(wheel.read_bytes())} {wheel.stat().st_size} 100444 "
            "wheels/tiny-1.0-py3-none-any.whl") in lines
    assert "- - 040555 wheels" in lines
    assert (snap / "MANIFEST.xxh3").read_text() == \
        f"{xxhash.xxh3_128_hexdigest(text.encode())}  MANIFEST\n"


def test_verify_clean_snapshot(built):
    root, _ = built
    for target in (root, current(root)):
        res = cowfs("verify", str(target))
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout == ""
        [line] = res.stderr.splitlines()
        assert line.startswith(f"verify {current(root)}: 5 files, ") and line.endswith(": OK")


def test_fresh_venv_installs_from_the_wheelhouse_and_pip_cache(built, wheels, tmp_path):
    snap = current(built[0])

    def venv_pip_install(name: str, *args: str, cache: Path) -> tuple[str, str]:
        venv = tmp_path / name
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        py = str(venv / "bin" / "python")
        res = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install",
                              "--no-index", *args], env=dict(os.environ, PIP_CACHE_DIR=str(cache)),
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        versions = subprocess.run([py, "-c", "import tiny, tinysrc; print(tiny.VERSION, "
                                   "tinysrc.VERSION)"], capture_output=True, text=True)
        return res.stdout, versions.stdout

    # the wheelhouse alone
    _, versions = venv_pip_install("a", "--find-links", str(snap / "wheels"), "tiny", "tinysrc",
                                   cache=tmp_path / "empty-cache")
    assert versions == "1.0 1.0\n"
    # the sdist from the original find-links, and pip finds the wheel it built during the
    # snapshot build in the snapshot's cache (copied: the sandbox's upper makes it writable)
    shutil.copytree(snap / "pip", tmp_path / "cache")
    out, versions = venv_pip_install("b", "--find-links", str(wheels), "tiny==1.0", "tinysrc",
                                     cache=tmp_path / "cache")
    assert versions == "1.0 1.0\n"
    assert "Using cached tinysrc-1.0-py3-none-any.whl" in out
    assert "Building wheel" not in out


def test_rebuild_switches_current_atomically(built, wheels, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(built[0], root, symlinks=True)
    old = current(root)
    seen: set[str] = set()
    errors: list[OSError] = []
    done = threading.Event()

    def watch():  # what a sandbox starting during the rebuild would find
        while not done.is_set():
            try:
                seen.add(os.readlink(root / "current"))
            except OSError as e:
                errors.append(e)
            time.sleep(0.0001)  # leave the CPU to the build

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = build(root, wheels, "tiny==2.0")
    finally:
        done.set()
        watcher.join()
    assert res.returncode == 0, res.stdout + res.stderr
    new = current(root)
    assert new != old and new.parent == old.parent
    assert errors == [], "current was missing for a moment"
    assert seen <= {f"snapshots/{old.name}", f"snapshots/{new.name}"}
    assert os.listdir(new / "wheels") == ["tiny-2.0-py3-none-any.whl"]
    assert (new / "requirements.txt").read_text() == "tiny==2.0\n"
    assert sorted(os.listdir(root / "snapshots")) == sorted([old.name, new.name])
    assert sorted(os.listdir(root)) == ["current", "snapshots", "store"]
    for snap in (old, new):  # the old one is intact
        assert cowfs("verify", str(snap)).returncode == 0


def test_snapshots_share_one_store(built, wheels, tmp_path):
    """Every file of a snapshot is a hard link to ROOT/store/sha256/<its sha256>: a second
    build of the same wheel adds no bytes for it, and a file's content is its object's name."""
    root = tmp_path / "root"
    assert build(root, wheels, "tiny==1.0").returncode == 0
    first = current(root)
    time.sleep(1.1)  # another second: another snapshot id
    assert build(root, wheels, "tiny==1.0", "tiny==2.0 ; python_version < '3'").returncode == 0
    second = current(root)
    assert second != first
    objects = root / "store" / "sha256"
    for snap in (first, second):
        for p in snap.rglob("*"):
            if p.is_file() and p.name not in ("MANIFEST", "MANIFEST.xxh3"):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                obj = objects / (digest + (".x" if os.stat(p).st_mode & 0o111 else ""))
                assert os.path.samefile(p, obj), p
    wheel = "wheels/tiny-1.0-py3-none-any.whl"
    assert os.path.samefile(first / wheel, second / wheel)
    assert os.stat(first / wheel).st_nlink == 3  # two snapshots and the store
    assert os.listdir(root / "store" / "tmp") == []


def test_failed_build_changes_nothing(built, wheels, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(built[0], root, symlinks=True)
    before = (os.readlink(root / "current"), sorted(os.listdir(root)),
              sorted(os.listdir(root / "snapshots")))
    res = build(root, wheels, "no-such-package-cowfs-test")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.splitlines()[-1] == \
        "cowfs: snapshot build failed: pip wheel exited with status 1"
    assert (os.readlink(root / "current"), sorted(os.listdir(root)),
            sorted(os.listdir(root / "snapshots"))) == before


def test_default_requirements_ship_with_the_package():
    from cowfs.kinds.pip import default_requirements

    names = [line for line in default_requirements().decode().splitlines()
             if line and not line.startswith("#")]
    assert {"requests", "urllib3", "idna", "certifi", "packaging"} <= set(names)
    assert 8 <= len(names) <= 20


# ---------------------------------------------------------------------------------------------
# verify finds every kind of damage


WHEEL = "wheels/tiny-1.0-py3-none-any.whl"


def flip_byte(snap: Path) -> None:
    data = bytearray((snap / WHEEL).read_bytes())
    data[len(data) // 2] ^= 0x01
    with writable(snap / WHEEL):
        (snap / WHEEL).write_bytes(data)


def remove_file(snap: Path) -> None:
    with writable(snap / "wheels"):
        (snap / WHEEL).unlink()


def add_file(snap: Path) -> None:
    with writable(snap / "pip"):
        (snap / "pip" / "planted").write_text("x")


def change_mode(snap: Path) -> None:
    (snap / WHEEL).chmod(0o644)


def truncate(snap: Path) -> None:
    with writable(snap / "requirements.txt"):
        os.truncate(snap / "requirements.txt", 1)


def tamper_manifest(snap: Path) -> None:
    text = (snap / "MANIFEST").read_text().replace(" 100444 requirements", " 100644 requirements")
    with writable(snap / "MANIFEST"):
        (snap / "MANIFEST").write_text(text)


def remove_seal(snap: Path) -> None:
    with writable(snap):
        (snap / "MANIFEST.xxh3").unlink()


class writable:
    """chmod u+w for the duration (a no-op for root, needed when the tests run as a user)."""

    def __init__(self, path: Path) -> None:
        self.path, self.mode = path, stat.S_IMODE(path.stat().st_mode)

    def __enter__(self) -> None:
        self.path.chmod(self.mode | stat.S_IWUSR)

    def __exit__(self, *exc) -> None:
        self.path.chmod(self.mode)


@pytest.mark.parametrize("damage, expected", [
    (flip_byte, f"changed {WHEEL} (content)"),
    (remove_file, f"missing {WHEEL}"),
    (add_file, "extra pip/planted"),
    (change_mode, f"changed {WHEEL} (mode 100644, manifest 100444)"),
    (truncate, "changed requirements.txt (size 1, manifest 18)"),
    (tamper_manifest, "changed MANIFEST (its hash is not the one in MANIFEST.xxh3: files not "
                      "checked)"),
    (remove_seal, "missing MANIFEST.xxh3"),
])
def test_verify_reports_damage(snap_copy, damage, expected):
    damage(snap_copy)
    res = cowfs("verify", str(snap_copy))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.splitlines() == [expected]
    assert res.stderr.rstrip().endswith(": 1 difference")


def test_odd_names_round_trip(tmp_path):
    odd = [b"sp ace", b"new\nline", b"per%cent", b"\xff\xfe not utf-8", b"tab\there", b"-"]
    top = tmp_path / "tree"
    (top / "dir").mkdir(parents=True)
    for name in odd:
        with open(os.path.join(os.fsencode(top / "dir"), name), "wb") as f:
            f.write(name)
    manifest.write(str(top))
    text = (top / "MANIFEST").read_bytes()
    assert all(32 < c < 127 for line in text.splitlines()[1:] for c in line if c != 32)
    assert b" dir/new%0Aline\n" in text and b" dir/per%25cent\n" in text
    assert set(manifest.parse(text)) == {b"dir"} | {b"dir/" + n for n in odd}
    assert manifest.verify(str(top)).differences == []
    res = cowfs("verify", str(top))
    assert res.returncode == 0, res.stdout + res.stderr


def test_parallel_hashing_matches_serial(tmp_path):
    paths, sizes = [], []
    for i in range(40):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(i * 50_000))
        paths.append(os.fsencode(p))
        sizes.append(i * 50_000)
    serial = manifest.hash_files(paths, sizes, jobs=1)
    assert manifest.hash_files(paths, sizes, jobs=2) == serial
    import xxhash
    assert serial == [xxhash.xxh3_128_hexdigest(open(p, "rb").read()) for p in paths]


def test_progress_bar_on_a_terminal(built):
    leader, follower = pty.openpty()
    try:
        res = subprocess.run([COWFS, "verify", str(built[0])], stdout=subprocess.PIPE,
                             stderr=follower, stdin=subprocess.DEVNULL, timeout=60)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert res.returncode == 0
    assert b"verify [" in out and b"100%" in out
    assert out.rstrip().endswith(b": OK")


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit 2


@pytest.mark.parametrize("args, says", [
    (["verify", "{tmp}/nope"], "{tmp}/nope does not exist"),
    (["verify", "{tmp}"], "{tmp} is not a snapshot (no MANIFEST) nor a snapshot root (no current)"),
    (["verify", "{tmp}/file"], "{tmp}/file is not a directory"),
    (["snapshot", "build", "{tmp}/root", "--requirements", "{tmp}/nope"],
     "cannot read requirements file {tmp}/nope: No such file or directory"),
    (["snapshot", "build", "{tmp}/root", "--find-links", "{tmp}/nope"],
     "--find-links {tmp}/nope is not a directory"),
    (["snapshot", "build", "{tmp}/root", "--python", "{tmp}/nope"],
     "--python {tmp}/nope is not an executable"),
    (["snapshot", "build", "{tmp}/file"], "snapshot root {tmp}/file is not a directory"),
    (["snapshot"],
     "missing snapshot command: build, push, pull or gc (see cowfs snapshot --help)"),
])
def test_bad_input(tmp_path, args, says):
    (tmp_path / "file").write_text("x")
    res = cowfs(*(a.format(tmp=tmp_path) for a in args))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"cowfs: {says.format(tmp=tmp_path)}"]
    assert sorted(os.listdir(tmp_path)) == ["file"], "nothing is created"


def test_python_without_pip_is_bad_input(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    py = str(tmp_path / "venv" / "bin" / "python")
    res = cowfs("snapshot", "build", str(tmp_path / "root"), "--python", py)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"cowfs: --python {py} has no pip: ModuleNotFoundError: "
                                       "No module named 'pip'"]
    assert not (tmp_path / "root").exists()


def test_no_fuse_imports_on_these_paths(built):
    code = ("import sys; from cowfs.cli import main; "
            f"assert main(['verify', {str(built[0])!r}]) == 0; "
            "bad = {'pyfuse3', 'trio'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
