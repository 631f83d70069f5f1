"""`cowfs snapshot push` and `pull` against a real OCI registry (docker-registry, started per
test on 127.0.0.1: tests/registry_server.py), run as subprocesses through the venv's `cowfs`."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import requests
from registry_server import RegistryServer, make_snapshot
from test_snapshot import COWFS, build, cowfs, current, wheels  # noqa: F401 - wheels: a fixture

from cowfs import manifest, registry, store


@pytest.fixture
def reg(tmp_path) -> RegistryServer:
    server = RegistryServer(tmp_path / "registry")
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


def files(n: int, size: int, seed: str = "") -> dict[str, bytes]:
    """n distinct files of size bytes in two directories, one of them executable."""
    out = {}
    for i in range(n):
        block = hashlib.sha256(f"{seed}{i}".encode()).digest()
        out[f"{'pip' if i % 2 else 'wheels'}/f{i:04d}{'.sh' if i == 0 else ''}"] = \
            (block * (size // len(block) + 1))[:size]
    return out


def push(snap: Path, ref: str) -> subprocess.CompletedProcess:
    return cowfs("snapshot", "push", str(snap), ref)


def pull(ref: str, root: Path) -> subprocess.CompletedProcess:
    return cowfs("snapshot", "pull", ref, str(root))


def counts(res: subprocess.CompletedProcess, verb: str) -> list[int]:
    """The numbers of the 'push: ... uploaded N blobs, B bytes; skipped M' line (or pull's)."""
    [line] = [x for x in res.stdout.splitlines()
              if x.startswith(f"{verb}: ") and " = snapshot " in x]
    tail = line.partition(" = snapshot ")[2].partition(": ")[2]
    return [int(w) for w in tail.replace(",", " ").replace(";", " ").split() if w.isdigit()]


def tree(top: Path) -> dict[str, tuple[int, bytes | None]]:
    return {str(p.relative_to(top)): (p.lstat().st_mode,
                                      p.read_bytes() if p.is_file() else None)
            for p in sorted(top.rglob("*"))}


def assert_store_clean(root: Path) -> None:
    """No partial object: every object's content has its name; nothing left in tmp/."""
    assert os.listdir(root / "store" / "tmp") == []
    for obj in (root / "store" / "sha256").iterdir():
        assert store.sha256_of(obj) == obj.name.removesuffix(".x"), obj


def one_line(res: subprocess.CompletedProcess, status: int) -> str:
    assert res.returncode == status, res.stdout + res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith("cowfs: ")
    return line


def wait_for_objects(root: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.monotonic() + 60
    objects = root / "store" / "sha256"
    while not (objects.is_dir() and len(os.listdir(objects)) >= n):
        assert proc.poll() is None, "the pull ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)


# ---------------------------------------------------------------------------------------------


def test_round_trip_of_a_built_snapshot(reg, wheels, tmp_path):  # noqa: F811
    """A pip-built snapshot pushed and pulled into another ROOT: the same id, the same bytes and
    modes, verifies, and its files are links into the second ROOT's store."""
    a = tmp_path / "a"
    assert build(a, wheels, "tiny==1.0", "tinysrc").returncode == 0
    ref = f"{reg.host}/team/pkgcache:week1"
    res = push(a, ref)
    assert res.returncode == 0, res.stdout + res.stderr
    uploaded, _, skipped = counts(res, "push")
    assert skipped == 0 and uploaded >= 6  # 3 meta blobs and the distinct contents

    b = tmp_path / "b"
    res = pull(ref, b)
    assert res.returncode == 0, res.stdout + res.stderr
    assert os.readlink(b / "current") == os.readlink(a / "current")
    assert tree(current(b)) == tree(current(a))
    assert sorted(os.listdir(b / "snapshots")) == [current(b).name]
    assert cowfs("verify", str(b)).returncode == 0
    whl = current(b) / "wheels" / "tiny-1.0-py3-none-any.whl"
    assert os.stat(whl).st_ino == os.stat(
        b / "store" / "sha256" / store.sha256_of(whl)).st_ino
    assert_store_clean(b)

    # the artifact, as another OCI tool sees it
    req = urllib.request.Request(f"http://{reg.host}/v2/team/pkgcache/manifests/week1",
                                 headers={"Accept": registry.OCI_MANIFEST})
    doc = json.load(urllib.request.urlopen(req))
    assert doc["artifactType"] == registry.ARTIFACT_TYPE
    assert doc["config"]["mediaType"] == registry.INDEX_TYPE
    assert doc["annotations"][registry.ID_ANNOTATION] == current(a).name
    assert [d["annotations"][registry.TITLE_ANNOTATION] for d in doc["layers"][:2]] == \
        [manifest.MANIFEST, manifest.SEAL]

    res = pull(ref, b)  # again: nothing to fetch
    assert res.returncode == 0, res.stdout + res.stderr
    fetched, nbytes, present = counts(res, "pull")
    assert (fetched, nbytes) == (0, 0) and present > 0


def test_second_push_and_pull_send_only_what_changed(reg, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    week1 = files(20, 10_000)
    make_snapshot(a, week1)
    ref1, ref2 = f"{reg.host}/cache:1", f"{reg.host}/cache:2"
    res = push(a, ref1)
    assert res.returncode == 0, res.stdout + res.stderr
    assert counts(res, "push")[0] == 20 + 3
    assert counts(pull(ref1, b), "pull")[:2] == [20, 200_000]

    week2 = dict(week1)
    week2["pip/f0001"] = b"changed" * 1000
    week2["wheels/f0002"] = b"changed too" * 1000
    week2["wheels/new"] = b"new" * 1000
    snap2 = make_snapshot(a, week2)
    res = push(a, ref2)
    assert res.returncode == 0, res.stdout + res.stderr
    uploaded, nbytes, skipped = counts(res, "push")
    meta = sum((snap2 / n).stat().st_size for n in (manifest.MANIFEST, manifest.SEAL))
    changed = 7000 + 11000 + 3000
    assert (uploaded, skipped) == (3 + 3, 18)
    assert changed + meta < nbytes < changed + meta + 10_000  # + the index

    res = pull(ref2, b)
    assert res.returncode == 0, res.stdout + res.stderr
    assert counts(res, "pull") == [3, changed, 18]
    assert os.readlink(b / "current") == os.readlink(a / "current")
    assert tree(current(b)) == tree(snap2)


def test_killed_pull_resumes(reg, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_snapshot(a, files(100, 1 << 20))
    ref = f"{reg.host}/cache:big"
    assert push(a, ref).returncode == 0
    proc = subprocess.Popen([COWFS, "snapshot", "pull", ref, str(b)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_for_objects(b, proc, 10)
    finally:
        proc.kill()
        proc.communicate()
    assert not os.path.lexists(b / "current")
    have = len(os.listdir(b / "store" / "sha256"))
    assert 10 <= have < 100

    res = pull(ref, b)
    assert res.returncode == 0, res.stdout + res.stderr
    fetched, _, present = counts(res, "pull")
    assert present >= have and fetched + present == 100
    assert tree(current(b)) == tree(current(a))
    assert_store_clean(b)


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_damaged_blob_is_not_switched_to(reg, tmp_path, damage):
    a, b = tmp_path / "a", tmp_path / "b"
    snap = make_snapshot(a, files(6, 5000))
    old = make_snapshot(b, {"old": b"old"})
    ref = f"{reg.host}/cache:1"
    assert push(snap, ref).returncode == 0
    victim = "sha256:" + store.sha256_of(snap / "wheels" / "f0002")
    data = reg.blob_data(victim)
    content = data.read_bytes()
    data.write_bytes(content[:100] + b"X" + content[101:] if damage == "tamper" else content[:99])

    line = one_line(pull(ref, b), 1)
    assert f"blob {victim} arrived damaged" in line
    assert current(b) == old
    assert sorted(os.listdir(b / "snapshots")) == [old.name]
    assert not (b / "store" / "sha256" / victim[7:]).exists()
    assert_store_clean(b)


def test_registry_stopped_mid_pull(reg, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_snapshot(a, files(200, 1 << 20))
    old = make_snapshot(b, {"old": b"old"})
    ref = f"{reg.host}/cache:big"
    assert push(a, ref).returncode == 0
    proc = subprocess.Popen([COWFS, "snapshot", "pull", ref, str(b)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for_objects(b, proc, 5)
        reg.proc.kill()
        started = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - started < 15  # the retries give up in seconds
    assert proc.returncode == 1, err
    [line] = err.splitlines()
    assert line.startswith(f"cowfs: pull of {ref}: registry {reg.host}: "), line
    assert current(b) == old
    assert sorted(os.listdir(b / "snapshots")) == [old.name]
    assert_store_clean(b)


@pytest.mark.parametrize("ref, says", [
    ("cache:1", "bad reference 'cache:1': expected REGISTRY/REPO:TAG"),
    ("team/cache:1", "bad reference"),  # no registry: team is not a host name
    ("{host}/cache", "bad reference"),  # no tag
    ("{host}/Cache:1", "bad reference"),  # upper case
    ("{host}/cache:1/x", "bad reference"),
    ("{host}/cache:missing", "no such repository or tag in the registry"),
    ("{host}/nosuchrepo:1", "no such repository or tag in the registry"),
])
def test_bad_reference(reg, tmp_path, ref, says):
    make_snapshot(tmp_path / "a", files(2, 100))
    assert push(tmp_path / "a", f"{reg.host}/cache:1").returncode == 0
    root = tmp_path / "b"
    ref = ref.format(host=reg.host)
    assert says in one_line(pull(ref, root), 2)
    assert not root.exists()
    if "missing" not in ref and "nosuchrepo" not in ref:
        assert says in one_line(push(tmp_path / "a", ref), 2)


def test_not_a_cowfs_snapshot(reg, tmp_path):
    """A tag holding some other artifact (an empty OCI image here) is bad input."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    post = requests.post(f"http://{reg.host}/v2/other/blobs/uploads/", timeout=10)
    location = urllib.parse.urljoin(post.url, post.headers["Location"])
    sep = "&" if "?" in location else "?"
    assert requests.put(f"{location}{sep}digest={digest}", data=config,
                        timeout=10).status_code == 201
    doc = {"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST, "layers": [],
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest, "size": len(config)}}
    assert requests.put(f"http://{reg.host}/v2/other/manifests/1", json=doc, timeout=10,
                        headers={"Content-Type": registry.OCI_MANIFEST}).status_code == 201
    line = one_line(pull(f"{reg.host}/other:1", tmp_path / "b"), 2)
    assert "is not a cowfs snapshot (artifact type application/vnd.oci.image.config" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("entry", [
    ["../x", "100444", "sha256:" + "a" * 64],
    ["/x", "100444", "sha256:" + "a" * 64],
    ["d/../x", "100444", "sha256:" + "a" * 64],
    ["nodir/x", "100444", "sha256:" + "a" * 64],  # its parent is not in the index
    ["MANIFEST", "100444", "sha256:" + "a" * 64],
    ["x", "100644", "sha256:" + "a" * 64],  # writable: no snapshot has that
    ["x", "120777", "sha256:" + "a" * 64],  # a symlink
    ["x", "100444", None],
    ["x", "100444", "sha256:" + "b" * 64],  # not a layer of the manifest
    ["x", "100444", "sha256:../../etc"],
])
def test_index_from_the_registry_is_checked(entry):
    """The index comes from the network: nothing in it may name a path outside the snapshot,
    a mode a snapshot cannot hold, or a blob the manifest does not list."""
    index = {"id": "x", "entries": [["d", "040555", None], entry]}
    with pytest.raises(ValueError):
        registry._parse_index(index, {"a" * 64: 1})


def test_push_bad_input(reg, tmp_path):
    assert "does not exist" in one_line(push(tmp_path / "nope", f"{reg.host}/c:1"), 2)
    (tmp_path / "empty").mkdir()
    assert "is not a snapshot" in one_line(push(tmp_path / "empty", f"{reg.host}/c:1"), 2)
    # a tampered snapshot is not published
    snap = make_snapshot(tmp_path / "a", files(2, 100))
    victim = snap / "pip" / "f0001"
    os.chmod(victim, 0o644)
    victim.write_bytes(b"changed")
    assert "does not match its MANIFEST" in one_line(push(snap, f"{reg.host}/c:1"), 1)
    assert not list(reg.storage.rglob("_manifests"))


def test_registry_down_is_a_transfer_failure(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    assert "cannot reach registry" in one_line(pull(f"127.0.0.1:{port}/c:1", tmp_path / "b"), 1)
    assert not (tmp_path / "b").exists()


def test_disk_full_during_pull(reg, tmp_path):
    """ROOT on a 12 MiB tmpfs, the snapshot 20 MiB: exit 1, current unchanged, no partial
    object, no snapshot dir left; after room is made, the pull completes."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root (make test runs as root)"
    a, b = tmp_path / "a", tmp_path / "b"
    make_snapshot(a, files(20, 1 << 20))
    ref = f"{reg.host}/cache:1"
    assert push(a, ref).returncode == 0
    b.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(b)], check=True)
    try:
        old = make_snapshot(b, {"old": b"old"})
        line = one_line(pull(ref, b), 1)
        assert "No space left on device" in line, line
        assert current(b) == old
        assert sorted(os.listdir(b / "snapshots")) == [old.name]
        assert_store_clean(b)
        subprocess.run(["mount", "-o", "remount,size=40m", str(b)], check=True)
        res = pull(ref, b)
        assert res.returncode == 0, res.stdout + res.stderr
        assert tree(current(b)) == tree(current(a))
    finally:
        subprocess.run(["umount", str(b)], check=True)


def test_two_pulls_at_once(reg, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_snapshot(a, files(40, 256 << 10))
    ref = f"{reg.host}/cache:1"
    assert push(a, ref).returncode == 0
    procs = [subprocess.Popen([COWFS, "snapshot", "pull", ref, str(b)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    assert sum(counts(subprocess.CompletedProcess([], 0, out, err), "pull")[0]
               for out, err in outs) == 40  # each blob fetched once
    assert tree(current(b)) == tree(current(a))
    assert sorted(os.listdir(b / "snapshots")) == [current(b).name]
    for f in (current(b) / "pip").iterdir():
        assert f.stat().st_nlink == 2  # the snapshot's link and the store's: one object
    assert_store_clean(b)


def test_credentials(tmp_path):
    """A registry with Basic authentication (htpasswd): credentials from the environment or the
    docker config; none or wrong ones are bad input (exit 2), never a traceback."""
    server = RegistryServer(tmp_path / "registry", user="ci", password="s3cret")
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        a = tmp_path / "a"
        make_snapshot(a, files(3, 1000))
        ref = f"{server.host}/cache:1"
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
        env["HOME"] = str(tmp_path / "home")  # no docker config
        assert "wants a user and password" in one_line(cowfs("snapshot", "push", str(a), ref,
                                                              env=env), 2)
        good = dict(env, COWFS_REGISTRY_USER="ci", COWFS_REGISTRY_PASSWORD="s3cret")
        res = cowfs("snapshot", "push", str(a), ref, env=good)
        assert res.returncode == 0, res.stdout + res.stderr
        wrong = dict(good, COWFS_REGISTRY_PASSWORD="wrong")
        assert "access denied" in one_line(cowfs("snapshot", "pull", ref, str(tmp_path / "b"),
                                                 env=wrong), 2)
        half = dict(env, COWFS_REGISTRY_USER="ci")
        assert "set both COWFS_REGISTRY_USER and COWFS_REGISTRY_PASSWORD" in one_line(
            cowfs("snapshot", "pull", ref, str(tmp_path / "b"), env=half), 2)
        assert not (tmp_path / "b").exists()

        docker = tmp_path / "home" / ".docker"
        docker.mkdir(parents=True)
        (docker / "config.json").write_text(json.dumps(
            {"auths": {server.host: {"auth": base64.b64encode(b"ci:s3cret").decode()}}}))
        res = cowfs("snapshot", "pull", ref, str(tmp_path / "b"), env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert tree(current(tmp_path / "b")) == tree(current(a))
    finally:
        server.stop()


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5000", True), ("localhost", True), ("[::1]:443", True), ("127.1.2.3", True),
    ("registry.example.com", False), ("10.0.0.1:5000", False), ("localhost.evil.com", False),
])
def test_plain_http_only_for_loopback(host, loopback):
    assert registry.is_loopback(host) is loopback
