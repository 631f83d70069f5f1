"""npm caches as snapshots (issue 17), with real parts: `cowfs snapshot build --kind npm` runs the
real npm against the real npm registry once per module (a few small popular packages), into a
root that holds a pip snapshot already (built offline from local wheels); then the test user
mounts sandboxes over the snapshot's npm/ as their ~/.npm and installs with npm in a network
namespace of its own, so nothing but the cache can serve it. Without the registry the build, and
so every test here, fails with the reason; the bad-input tests need no network.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import overlay
import pytest
from registry_server import RegistryServer
from test_sandbox import Sandbox, as_user, ok, unmount_below, user_dir
from test_snapshot import COWFS, build, cowfs, current, wheels  # noqa: F401 - wheels: a fixture

from cowfs import popular, store
from cowfs.kinds import npm

#: small popular packages with a few dependencies: 8 packages in all
PACKAGES = ["debug", "chalk@4"]
INSTALLED = {"ansi-styles", "chalk", "color-convert", "color-name", "debug", "has-flag", "ms",
             "supports-color"}
NPM_ENV = ["npm_config_update_notifier=false", "npm_config_audit=false", "npm_config_fund=false",
           "npm_config_logs_max=0"]


def need_registry() -> None:
    res = subprocess.run(["npm", "ping"], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        pytest.fail("these tests build from the npm registry, which npm cannot reach here "
                    f"(npm ping: {(res.stderr.strip().splitlines() or ['?'])[-1]})",
                    pytrace=False)


class Built:
    def __init__(self, base: str, root: Path, before: Path, stdout: str):
        self.base, self.root, self.before, self.stdout = base, root, before, stdout
        self.home = user_dir(os.path.join(base, "home"))  # the test user's HOME
        self.n = 0

    def sandbox(self, name: str) -> Sandbox:
        """A sandbox whose mountpoint is a user's ~/.npm: HOME/<name>/.npm."""
        home = user_dir(os.path.join(self.home, name))
        return Sandbox(os.path.join(home, "state"), user_dir(os.path.join(home, ".npm")))

    def project(self) -> str:
        """A fresh npm project of the test user's."""
        self.n += 1
        path = user_dir(os.path.join(self.home, f"project-{self.n}"))
        with open(os.path.join(path, "package.json"), "w") as f:
            f.write('{"private": true}\n')
        e = overlay.env()
        os.chown(os.path.join(path, "package.json"), e.uid, e.gid)  # npm install saves to it
        return path


def npm_as_user(home: str, project: str, *args: str) -> subprocess.CompletedProcess:
    """npm ARGS in PROJECT as the test user with HOME=home (its cache: home/.npm), in a network
    namespace with no network (root makes it, then drops to the user)."""
    cmd = ["unshare", "-n", *overlay.as_user(["env", f"HOME={home}", *NPM_ENV, "npm", *args])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=project,
                          env=overlay.user_env(overlay.env()), stdin=subprocess.DEVNULL)


def verified(res: subprocess.CompletedProcess) -> bool:
    """`cowfs verify` passed (its report goes to stderr when that is not a terminal)."""
    return res.returncode == 0 and (res.stdout + res.stderr).rstrip().endswith(": OK")


def installed(project: str) -> set[str]:
    return set(os.listdir(os.path.join(project, "node_modules"))) - {".package-lock.json"}


@pytest.fixture(scope="module")
def built(harness, wheels) -> Built:  # noqa: F811 - the imported fixture
    need_registry()
    base = overlay.new_dir("npm")
    root = Path(base) / "root"
    res = build(root, wheels, "tiny==1.0")  # pip first: the npm build keeps it
    assert res.returncode == 0, res.stdout + res.stderr
    before = current(root)
    packages = Path(base) / "packages.txt"
    packages.write_text("".join(f"{p}\n" for p in PACKAGES))
    res = cowfs("snapshot", "build", str(root), "--kind", "npm", "-r", str(packages))
    assert res.returncode == 0, ("cowfs snapshot build --kind npm (needs the npm registry): "
                                                 + res.stdout + res.stderr)
    return Built(base, root, before, res.stdout)


def test_build_holds_npms_cache_beside_pips(built):
    snap = current(built.root)
    assert snap != built.before
    assert sorted(os.listdir(snap)) == ["MANIFEST", "MANIFEST.xxh3", "npm", "npm-packages.txt",
                                        "pip", "requirements.txt", "wheels"]
    assert (snap / "npm-packages.txt").read_text() == "debug\nchalk@4\n"
    assert f"snapshot: kept pip, requirements.txt, wheels of snapshots/{built.before.name}" in (
        built.stdout.splitlines())
    # pip's entries are the previous snapshot's files, linked (the same store objects)
    for rel in ("requirements.txt", "wheels/tiny-1.0-py3-none-any.whl"):
        assert os.path.samestat(os.stat(snap / rel), os.stat(built.before / rel))
    # npm's cache dir holds its cache only (no logs), read-only, in the MANIFEST
    assert os.listdir(snap / "npm") == ["_cacache"]
    listed = (snap / "MANIFEST").read_text()
    assert " npm/_cacache/index-v5/" in listed and " npm/_cacache/content-v2/sha512/" in listed
    # entries hold URLs and integrity, no path of the build: the cache works mounted anywhere
    keys = {e["key"].removeprefix("make-fetch-happen:request-cache:")
            for e in index_entries(snap / "npm")}
    for name in INSTALLED:
        assert f"https://registry.npmjs.org/{name}" in keys, name  # its packument
        assert any(k.startswith(f"https://registry.npmjs.org/{name}/-/") for k in keys), name
    assert str(built.root) not in "".join(p.read_text(errors="replace")
                                          for p in (snap / "npm").rglob("*") if p.is_file())
    for target in (str(built.root), str(built.before)):
        v = cowfs("verify", target)
        assert verified(v), v.stdout + v.stderr


def test_offline_install_from_a_sandbox(built):
    sb = built.sandbox("offline")
    home = os.path.dirname(sb.mnt)
    try:
        ok(sb.mount(str(built.root), "--subdir", "npm"))
        for mode in ("--offline", "--prefer-offline"):
            project = built.project()
            r = npm_as_user(home, project, "install", mode, *PACKAGES)
            assert r.returncode == 0, (mode, r.stdout + r.stderr)
            assert installed(project) == INSTALLED, mode
            # npm's lockfile records each tarball's integrity, checked on extraction
            lock = json.loads(Path(project, "package-lock.json").read_text())
            assert all(p["integrity"].startswith("sha512-")
                       for name, p in lock["packages"].items() if name), lock
            r = as_user("/usr/bin/env", "-C", project, "node", "-e",
                        "const c = require('chalk'); require('debug');"
                        "console.log(c.level >= 0, require('ms')('1m'))")
            assert r.stdout == "true 60000\n", r.stdout + r.stderr
        # a package the snapshot lacks: npm says the cache has it not (no network here)
        r = npm_as_user(home, built.project(), "install", "--offline", "left-pad")
        assert r.returncode != 0 and "ENOTCACHED" in r.stderr, r.stderr
        sb.umount()
    finally:
        unmount_below(built.home)
    assert verified(cowfs("verify", str(built.root)))
    # what npm wrote into its sandbox is an upper like any other
    upper = os.path.join(sb.state, "upper")
    for args in (["fsck", "--upper", upper],
                 ["diff", "--upper", upper, "--lower", str(current(built.root) / "npm")]):
        r = cowfs(*args)
        assert r.returncode == 0, (args, r.stdout + r.stderr)


def test_push_and_pull_carry_both_kinds(built):
    """The pip + npm snapshot through a registry on loopback into a second root, and an offline
    npm install from a sandbox over the pulled one."""
    server = RegistryServer(Path(built.base) / "registry")
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        ref = f"{server.host}/cache:npm"
        r = cowfs("snapshot", "push", str(built.root), ref)
        assert r.returncode == 0, r.stdout + r.stderr
        pulled = Path(built.base) / "pulled"
        r = cowfs("snapshot", "pull", ref, str(pulled))
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        server.stop()
    assert current(pulled).name == current(built.root).name
    assert sorted(os.listdir(current(pulled))) == sorted(os.listdir(current(built.root)))
    sb = built.sandbox("pulled")
    try:
        ok(sb.mount(str(pulled), "--subdir", "npm"))
        project = built.project()
        r = npm_as_user(os.path.dirname(sb.mnt), project, "install", "--offline", *PACKAGES)
        assert r.returncode == 0, r.stdout + r.stderr
        assert installed(project) == INSTALLED
        sb.umount()
    finally:
        unmount_below(built.home)
    assert verified(cowfs("verify", str(pulled)))


def index_entries(cache: Path) -> list[dict]:
    """cacache's index below CACHE: bucket files of lines `<hash>\t<json>`."""
    return [json.loads(line.split("\t", 1)[1])
            for p in (cache / "_cacache" / "index-v5").rglob("*") if p.is_file()
            for line in p.read_text().splitlines() if "\t" in line]


def content_path(cache: Path, tarball: str) -> str:
    """The path of TARBALL's content in cacache, relative to the cache dir: content-v2/ALGO/hex
    of the integrity in its index entry, split 2/2/rest."""
    for entry in index_entries(cache):
        if entry["key"].endswith(tarball):
            algo, digest = entry["integrity"].split("-", 1)
            h = base64.b64decode(digest).hex()
            return os.path.join("_cacache", "content-v2", algo, h[:2], h[2:4], h[4:])
    raise AssertionError(f"no index entry for {tarball}")


def poisoned_tarball() -> bytes:
    """A well-formed package tarball of ms 2.1.3, but not the published one."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for name, data in (("package/package.json",
                            b'{"name": "ms", "version": "2.1.3", "main": "index.js"}'),
                           ("package/index.js", b'module.exports = () => "poisoned";\n')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_sandboxs_cache_changes_stay_its_own(built):
    """A: npm cache verify, a poisoned tarball, npm cache clean --force. B, mounted all along,
    sees none of it and installs clean packages; the snapshot still verifies."""
    a, b = built.sandbox("a"), built.sandbox("b")
    a_home, b_home = os.path.dirname(a.mnt), os.path.dirname(b.mnt)
    try:
        ok(a.mount(str(built.root), "--subdir", "npm"))
        ok(b.mount(str(built.root), "--subdir", "npm"))
        b_view = overlay.dump_tree(b.mnt)
        r = npm_as_user(a_home, built.project(), "cache", "verify")
        assert r.returncode == 0 and "Cache verified and compressed" in r.stdout, r.stderr
        # the tarball of ms replaced in A's cache: npm's integrity check refuses it there
        tgz = os.path.join(a.mnt, content_path(current(built.root) / "npm", "/ms/-/ms-2.1.3.tgz"))
        poison = os.path.join(built.home, "poisoned.tgz")
        Path(poison).write_bytes(poisoned_tarball())
        os.chmod(poison, 0o644)
        ok(as_user("cp", poison, tgz))
        project = built.project()
        r = npm_as_user(a_home, project, "install", "--offline", *PACKAGES)
        assert r.returncode != 0, r.stdout
        assert "ms-2.1.3.tgz (sha512-" in r.stderr and "seems to be corrupted" in r.stderr, (
            r.stderr)
        assert not os.path.exists(os.path.join(project, "node_modules", "ms"))
        r = npm_as_user(a_home, built.project(), "cache", "clean", "--force")
        assert r.returncode == 0, r.stderr
        r = as_user("ls", "-A", a.mnt)
        assert r.returncode == 0 and "_cacache" not in r.stdout.split(), r.stdout
        # B: the view it had, and a clean install of the real ms
        assert overlay.dump_tree(b.mnt) == b_view, "the other sandbox saw a change"
        project = built.project()
        r = npm_as_user(b_home, project, "install", "--offline", *PACKAGES)
        assert r.returncode == 0, r.stdout + r.stderr
        assert installed(project) == INSTALLED
        r = as_user("/usr/bin/env", "-C", project, "node", "-e",
                    "console.log(require('ms')(60000))")
        assert r.stdout == "1m\n", r.stdout + r.stderr
        a.umount()
        b.umount()
    finally:
        unmount_below(built.home)
    v = cowfs("verify", str(built.root))
    assert verified(v), v.stdout + v.stderr


def test_top_npm_leaves_out_what_fails(harness, tmp_path):
    need_registry()
    stats = tmp_path / "stats.csv"
    missing = "cowfs-test-no-such-package-17"
    stats.write_text(f"project,downloads\nms,300\n{missing},200\nhas-flag,100\ncolor-name,50\n")
    res = cowfs("snapshot", "build", str(tmp_path / "root"), "--kind", "npm", "--top", "2",
                "--stats", str(stats))
    assert res.returncode == 0, res.stdout + res.stderr
    snap = current(tmp_path / "root")
    record = json.loads((snap / "npm-BUILD.json").read_text())
    assert [(p["project"], p["downloads"]) for p in record["included"]] == [("ms", 300),
                                                                            ("has-flag", 100)]
    [left] = record["excluded"]
    assert left["project"] == missing and left["reason"].startswith(
        f"E404: 404 Not Found - GET https://registry.npmjs.org/{missing}"), left
    assert f"snapshot: left out {missing}: {left['reason']}" in res.stdout.splitlines()
    pins = (snap / "npm-packages.txt").read_text().splitlines()
    assert pins == [f"{p['project']}@{p['version']}" for p in record["included"]]
    assert sorted(os.listdir(snap)) == ["MANIFEST", "MANIFEST.xxh3", "npm", "npm-BUILD.json",
                                        "npm-packages.txt"]


def test_shipped_npm_lists_parse():
    sample = Path(popular.__file__).with_name("top-npm-sample.csv")
    ranked = popular.ranked(str(sample), 1, None, npm.NPM)
    assert 20 <= len(ranked) <= 60
    assert [p.downloads for p in ranked] == sorted((p.downloads for p in ranked), reverse=True)
    specs = [line for line in npm.default_packages().decode().splitlines()
             if line and not line.startswith("#")]
    assert specs and all(npm.NPM.pattern.fullmatch(s) for s in specs)


@pytest.mark.parametrize("args, says", [
    (["--kind", "npm", "--python", "/usr/bin/python3"],
     "--python is not an option of --kind npm"),
    (["--kind", "npm", "--find-links", "{tmp}"], "--find-links is not an option of --kind npm"),
    (["--kind", "npm", "--no-index"], "--no-index is not an option of --kind npm"),
    (["--kind", "maven"], "--kind maven: unknown (kinds: pip, npm)"),
    (["--kind", "npm", "-r", "{tmp}/nope"],
     "cannot read requirements file {tmp}/nope: No such file or directory"),
    (["--kind", "npm", "--top", "1", "--stats", "{tmp}/stats.csv"],
     "stats file {tmp}/stats.csv line 3: '--foo' is not a project name"),
])
def test_bad_input(tmp_path, args, says):
    (tmp_path / "stats.csv").write_text("project,downloads\n@types/node,9\n--foo,5\n")
    res = cowfs("snapshot", "build", str(tmp_path / "root"),
                *(a.format(tmp=tmp_path) for a in args))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"cowfs: {says.format(tmp=tmp_path)}"]
    assert sorted(os.listdir(tmp_path)) == ["stats.csv"], "nothing is created"


def test_builds_into_one_root_wait_for_each_other(built, wheels):  # noqa: F811
    """A build holds ROOT/snapshots' flock for its whole run: a second one (here pip, while the
    test holds the lock as a build would) waits before it makes anything, then starts from the
    current snapshot, npm's entries included."""
    root = built.root
    before = current(root)
    req = root.parent / f"{root.name}-requirements.txt"  # written by the fixture's pip build
    with store.locked(os.open(root / "snapshots", os.O_RDONLY | os.O_DIRECTORY), exclusive=True):
        pip = subprocess.Popen([COWFS, "snapshot", "build", str(root), "-r", str(req),
                                "--find-links", str(wheels), "--no-index"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert pip.stdout.readline().startswith("snapshot: pip ")
        assert pip.stdout.readline() == (f"snapshot: waiting for another build in "
                                         f"{root}/snapshots\n")
        time.sleep(0.5)
        assert pip.poll() is None and sorted(os.listdir(root / "snapshots")) == sorted(
            os.listdir(before.parent)) and current(root) == before
    out, err = pip.communicate(timeout=120)
    assert pip.returncode == 0, out + err
    after = current(root)
    assert after != before
    assert f"snapshot: kept npm, npm-packages.txt of snapshots/{before.name}" in out.splitlines()
    assert os.path.samestat(os.stat(after / "npm-packages.txt"),
                            os.stat(before / "npm-packages.txt"))
    assert verified(cowfs("verify", str(root)))


def test_npmcache_bench_runs_every_variant(harness):
    """bench/npmcache.py end to end, one round of one small package: the machinery (snapshot,
    sandbox mounts, the five installs, the results), not the speed."""
    need_registry()
    top = Path(overlay.new_dir("npmcache-bench"))
    packages = top / "packages.txt"
    packages.write_text("ms\n")
    os.chmod(packages, 0o644)
    out = top / "out"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([overlay.sys.executable, "-m", "bench.npmcache", "--rounds", "1",
                    "--packages", str(packages), "--out", str(out)], cwd=repo, check=True,
                   timeout=600, stdout=subprocess.DEVNULL,
                   env={**os.environ, "COWFS_BENCH_USER": overlay.TEST_USER})
    res = json.loads((out / "results.json").read_text())
    assert res["snapshot_verify"]["status"] == 0, res
    got = {r["variant"]: r for r in res["runs"]}
    assert set(got) == {"offline", "prefer-offline", "cache", "copy", "empty"}
    for v, r in got.items():
        assert r["error"] is None and r["install_s"] > 0 and r["added"] == 1, r
        assert (r["mount_s"] is None) == (v in ("copy", "empty")), r
    assert "| offline |" in (out / "results.md").read_text()


def test_no_npm_is_bad_input(tmp_path):
    res = cowfs("snapshot", "build", str(tmp_path / "root"), "--kind", "npm",
                env={**os.environ, "PATH": str(tmp_path)})
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == ["cowfs: --kind npm needs npm and node, not installed here "
                                       "(as root: apt-get install -y npm)"]
    assert os.listdir(tmp_path) == [], "nothing is created"
