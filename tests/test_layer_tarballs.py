"""Image layers as lowers: `cowfs mount --lower LAYER.tar.gz ...` (cowfs/layertar.py).

A stack of three OCI layer tarballs (built here with tarfile; gzip, zstd from the zstandard
package and from /usr/bin/zstd, plain tar) with whiteouts, an opaque dir, hard links, symlinks,
a file replaced by a dir and a dir by a file, xattrs, a FIFO. cowfs mounts the tarballs (as the
test user, rootless) and is compared with two oracles:
1. the kernel: the same tarballs unpacked the way containerd's overlay snapshotter does (GNU tar
   as root, then `.wh.NAME` -> a 0/0 char device, `.wh..wh..opq` -> user.overlay.opaque=y),
   kernel overlay (userxattr) mounted over them; the same ops run on both afterwards;
2. a model: the OCI image spec's "Applying Changesets" done by hand into a plain directory.
Also: a second mount unpacks nothing, two mounts at once unpack once, bad tarballs are exit 2
with the store unchanged, gc keeps what layers link, rootless drops are reported.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time

import pytest
import zstandard

import overlay
from test_sandbox import as_user, cowfs, mounts_below, refused, unmount_below, user_dir

T1, T2, T3 = 1_500_000_000, 1_550_000_000, 1_580_000_000  # each layer's mtimes


def E(name: str, data: bytes | str | None = None, *, kind: str = "f", mode: int | None = None,
      link: str = "", xattrs: dict | None = None, mtime: int | None = None) -> dict:
    """One tar entry: kind f(ile) d(ir) l(symlink) h(ard link) p(FIFO) c(har device)."""
    return {"name": name, "data": data.encode() if isinstance(data, str) else (data or b""),
            "kind": kind, "mode": mode, "link": link, "xattrs": xattrs or {}, "mtime": mtime}


def D(name: str, mode: int = 0o755, **kw) -> dict:
    return E(name, kind="d", mode=mode, **kw)


BOTTOM = [
    D("etc"), E("etc/passwd", "root:x:0:0\n"), D("etc/conf.d"),
    E("etc/conf.d/a.conf", "a=1\n"), E("etc/conf.d/b.conf", "b=1\n"),
    E("etc/mime", "x", xattrs={"user.mime_type": "text/plain"}),
    D("usr"), D("usr/bin"), E("usr/bin/tool", "tool v1\n", mode=0o755),
    E("usr/bin/tool-link", kind="h", link="usr/bin/tool"),
    D("usr/lib"), E("usr/lib/libc.so", "ELF", mode=0o755), E("lib", kind="l", link="usr/lib"),
    D("opt"), D("opt/app"), E("opt/app/data.txt", "data\n"), E("opt/app/old.txt", "old\n"),
    D("var"), D("var/cache", mode=0o775), E("var/cache/x", "cache\n"),
    E("replaced", "a file in the bottom layer\n"),
    D("dir2file"), E("dir2file/inner", "gone with its dir\n"),
    D("gone-dir"), D("gone-dir/sub"), E("gone-dir/sub/f", "f\n"),
    D("run"), E("run/fifo", kind="p", mode=0o600),
    E("same.txt", "the same bytes\n", mode=0o644, mtime=T1),
    E("private", "secret\n", mode=0o600), E("dup-in-layer-1", "dup\n"),
    E("dup-in-layer-2", "dup\n"),
    D("redo"), E("redo/old", "old\n"), E("refile", "old\n"),
]
MIDDLE = [
    E(".wh.gone-dir"),
    D("etc"), D("etc/conf.d"), E("etc/conf.d/.wh.a.conf"), E("etc/conf.d/c.conf", "c=1\n"),
    D("opt"), D("opt/app"), E("opt/app/.wh..wh..opq"), E("opt/app/new.txt", "new\n"),
    D("usr"), D("usr/bin"), E("usr/bin/tool", "tool v2\n", mode=0o755),
    D("replaced", mode=0o750), E("replaced/inside", "a dir now\n"),
    D("etc/hl"), E("etc/hl/one", "linked\n", mode=0o640),
    E("etc/hl/two", kind="h", link="etc/hl/one"),
    E("same-too.txt", "the same bytes\n", mode=0o644, mtime=T1),
    D("empty", mode=0o700),
    # a whiteout and an entry of its name in one layer: the whiteout hides only what is below
    E(".wh.redo"), D("redo"), E("redo/new", "new\n"), E(".wh.refile"), E("refile", "new\n"),
]
TOP = [
    E("dir2file", "a file over a dir\n"),
    D("var"), D("var/cache", mode=0o775), E("var/cache/.wh..wh..opq"),
    D("etc"), E("etc/passwd", "root:x:0:0\nu:x:1000:1000\n", xattrs={"user.origin": "top"}),
    E("etc/motd", kind="l", link="/etc/issue"),
    D("usr"), D("usr/bin"), E("usr/bin/.wh.tool-link"), E(".wh.lib"),
    D("etc/hl"), D("etc/hl/three"), E("etc/hl/three/x", "x\n"),
    D("new-dir", mode=0o711),
]
LAYERS = [BOTTOM, MIDDLE, TOP]  # bottom first
TIMES = [T1, T2, T3]


def tar_bytes(entries: list[dict], mtime: int, uid: int, gid: int) -> bytes:
    """A PAX tar of ENTRIES; parents each layer touches are listed before them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mtime = e["mtime"] or mtime
            ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""
            kind = e["kind"]
            ti.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
                       "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE, "c": tarfile.CHRTYPE,
                       "?": b"Z"}[kind]  # ?: a type tar does not know
            ti.mode = e["mode"] if e["mode"] is not None else (0o755 if kind == "d" else 0o644)
            ti.linkname = e["link"]
            if e["xattrs"]:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e["xattrs"].items()}
            if kind == "c":  # /dev/null
                ti.devmajor, ti.devminor = 1, 3
            if kind in ("f", "?"):
                ti.size = len(e["data"])
                tf.addfile(ti, io.BytesIO(e["data"]))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if how == "zstd-cli":
        return subprocess.run(["/usr/bin/zstd", "-q", "-c"], input=data, capture_output=True,
                              check=True, timeout=60).stdout
    assert how == "tar"
    return data


def write_layers(where: str, layers: list[list[dict]], hows: list[str]) -> list[str]:
    """The tarballs, bottom first, 0444 and owned by root: the test user reads them only."""
    e = overlay.env()
    out = []
    for i, (entries, how) in enumerate(zip(layers, hows, strict=True)):
        path = os.path.join(where, f"layer{i}.{how}")
        with open(path, "wb") as f:
            f.write(compress(tar_bytes(entries, TIMES[i % 3], e.uid, e.gid), how))
        os.chmod(path, 0o444)
        out.append(path)
    return out


def file_state(path: str) -> tuple:
    st = os.stat(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), st.st_mode, st.st_mtime_ns, st.st_ino


def store_state(root: str) -> dict:
    """Every path below ROOT with its type, mode, size, inode and mtime."""
    out = {}
    if not os.path.isdir(root):
        return out
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size,
                                             st.st_ino, st.st_mtime_ns)
    return out


# --- the oracles


def unpack_like_containerd(tarball: str, dest: str) -> None:
    """GNU tar as root (owners, modes, xattrs kept), then the whiteouts converted to the
    kernel's format, each directory's mtime put back to the layer's. A whiteout next to an
    entry of its name in the same layer hides only what is below (the spec's rule): a dir of
    that name is made opaque, a non-dir hides what is below anyway."""
    os.mkdir(dest, 0o755)
    how = tarball.rsplit(".", 1)[1]
    r = subprocess.run(["tar", "-x", "-p", "--same-owner", "--xattrs", "--xattrs-include=user.*",
                        *([] if how == "tar" else ["-I", "gzip" if how == "gzip" else "zstd"]),
                        "-f", tarball, "-C", dest],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    marks = []
    for d, _dirs, files in os.walk(dest):
        marks += [(d, n) for n in files if n.startswith(".wh.")]
    times = {d: os.lstat(d).st_mtime_ns for d, _ in marks}
    for d, n in marks:
        os.unlink(os.path.join(d, n))
        hidden = os.path.join(d, n[len(".wh."):])
        if n == ".wh..wh..opq":
            os.setxattr(d, "user.overlay.opaque", b"y")
        elif os.path.isdir(hidden) and not os.path.islink(hidden):
            os.setxattr(hidden, "user.overlay.opaque", b"y")  # a dir of the same layer: opaque
        elif not os.path.lexists(hidden):  # else: a non-dir of the same layer hides anyway
            os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    for d, t in times.items():
        os.utime(d, ns=(t, t))


def apply_changesets(layers: list[list[dict]], dest: str) -> None:
    """The OCI image spec's "Applying Changesets", bottom layer first, into a plain dir: a
    layer's whiteouts remove what the layers below made (`.wh..wh..opq`: every entry of its
    dir), then its entries are added, a directory merging with one that is there, anything
    else replacing what is there. Directories get their metadata at the end."""
    e = overlay.env()
    os.mkdir(dest, 0o755)
    os.chown(dest, e.uid, e.gid)
    dir_meta: dict[str, tuple[int, int]] = {}

    def rm(p: str) -> None:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
            for k in [k for k in dir_meta if k == p or k.startswith(p + "/")]:
                del dir_meta[k]
        elif os.path.lexists(p):
            os.unlink(p)

    for i, entries in enumerate(layers):
        for ent in entries:
            parent, base = os.path.split(ent["name"])
            if base == ".wh..wh..opq":
                for n in os.listdir(os.path.join(dest, parent)):
                    rm(os.path.join(dest, parent, n))
            elif base.startswith(".wh."):
                rm(os.path.join(dest, parent, base[len(".wh."):]))
        for ent in entries:
            if os.path.basename(ent["name"]).startswith(".wh."):
                continue
            p = os.path.join(dest, ent["name"])
            kind = ent["kind"]
            mtime = (ent["mtime"] or TIMES[i]) * 10**9
            mode = ent["mode"] if ent["mode"] is not None else (0o755 if kind == "d" else 0o644)
            if kind == "d":
                if not os.path.isdir(p) or os.path.islink(p):
                    rm(p)
                    os.mkdir(p)
                os.chown(p, e.uid, e.gid)
                dir_meta[p] = (mode, mtime)
                continue
            rm(p)
            if kind == "f":
                with open(p, "wb") as f:
                    f.write(ent["data"])
            elif kind == "l":
                os.symlink(ent["link"], p)
            elif kind == "h":
                os.link(os.path.join(dest, ent["link"]), p)
                continue
            elif kind == "p":
                os.mkfifo(p)
            os.chown(p, e.uid, e.gid, follow_symlinks=False)
            for k, v in ent["xattrs"].items():
                os.setxattr(p, k, v.encode())
            if kind != "l":
                os.chmod(p, mode)
            os.utime(p, ns=(mtime, mtime), follow_symlinks=False)
    for p in sorted(dir_meta, key=len, reverse=True):
        mode, mtime = dir_meta[p]
        os.chmod(p, mode)
        os.utime(p, ns=(mtime, mtime))


def comparable(tree: dict) -> dict:
    """A dump without st_ino identity and link counts of non-directories: for the model,
    a plain directory, whose hard links are the layers' own."""
    out = {}
    for path, entry in tree.items():
        entry = dict(entry)
        if entry.get("type") != "d":
            entry.pop("nlink", None)
            entry.pop("ino", None)
        out[path] = entry
    return out


def layer_dirs_of(store_root: str, tarballs: list[str]) -> list[str]:
    """The unpacked dirs of TARBALLS in the store, in the same order."""
    return [os.path.join(store_root, "layers", "sha256",
                         hashlib.sha256(open(t, "rb").read()).hexdigest()) for t in tarballs]


def mtimes(root: str, paths: list[str]) -> dict:
    res = overlay.run_ops(root, [["lstat_times", p] for p in paths])
    return {p: r["ok"]["mtime"] if "ok" in r else r for p, r in zip(paths, res, strict=True)}


# --- mounting the tarballs


class Box:
    """A scratch dir (root's, 0755) with the test user's store, uppers and mountpoints."""

    def __init__(self, name: str) -> None:
        self.base = overlay.new_dir(name)
        self.store = os.path.join(self.base, "store")  # made by cowfs, as the user
        os.chown(self.base, overlay.env().uid, overlay.env().gid)
        self.n = 0
        self.lock = threading.Lock()  # two mounts may be made at once

    def mount(self, lowers: list[str], *extra: str, upper: bool = True):
        """`cowfs mount` (background) of LOWERS (top first); (mountpoint, upper, result)."""
        with self.lock:
            self.n += 1
            n = self.n
        mnt = user_dir(os.path.join(self.base, f"mnt{n}"))
        args = ["mount", "--layer-store", self.store, *extra]
        for low in lowers:
            args += ["--lower", low]
        up = None
        if upper:
            up = user_dir(os.path.join(self.base, f"upper{n}"))
            args += ["--upper", up, "--work", user_dir(os.path.join(self.base, f"work{n}"))]
        return mnt, up, cowfs(*args, mnt)


@pytest.fixture
def box(harness, request):
    b = Box(request.node.name)
    yield b
    for mp in mounts_below(b.base):
        as_user("fusermount3", "-u", mp)
    unmount_below(b.base)


def unpacked_lines(res) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ": unpacked sha256:" in ln]


def umount(mnt: str) -> None:
    r = cowfs("umount", mnt)
    assert r.returncode == 0, r.stderr


# --- the tests

OPS = [
    ["write_file", "etc/passwd", "changed\n"],
    ["open", "f", "usr/bin/tool", ["O_WRONLY", "O_APPEND"]],
    ["write", "f", "more\n"], ["close", "f"], ["read_file", "usr/bin/tool"],
    ["unlink", "etc/conf.d/b.conf"], ["rmdir", "empty"], ["mkdir", "opt/app/made"],
    ["rename", "opt/app/new.txt", "opt/app/renamed.txt"], ["chmod", "private", 0o640],
    ["setxattr", "etc/mime", "user.mime_type", "text/x"], ["symlink", "usr/lib", "lib-again"],
    ["unlink", "etc/hl/two"], ["write_file", "dir2file", "rewritten\n"],
    ["listdir", "."], ["listdir", "etc/conf.d"], ["listdir", "opt/app"], ["listdir", "var/cache"],
    ["read_file", "etc/hl/one"], ["stat", "etc/hl/one"], ["read_file", "same-too.txt"],
]


@pytest.mark.parametrize("hows", [["gzip"] * 3, ["zstd"] * 3, ["gzip", "zstd-cli", "tar"]],
                         ids=["gzip", "zstd", "mixed"])
def test_stack_shows_what_the_kernel_and_the_model_show(box, hows, harness):
    tarballs = write_layers(box.base, LAYERS, hows)  # bottom first
    before = {t: file_state(t) for t in tarballs}

    # the kernel over containerd-style unpacked layers
    kdirs = []
    for i, t in enumerate(tarballs):
        kdirs.append(os.path.join(box.base, f"kernel-lower{i}"))
        unpack_like_containerd(t, kdirs[-1])
    kbase = user_dir(os.path.join(box.base, "kernel"))
    klay = overlay.Layers(kbase, kdirs[::-1], user_dir(os.path.join(kbase, "upper")),
                          None, user_dir(os.path.join(kbase, "mnt")))
    klay.new_work()
    model = os.path.join(box.base, "model")
    apply_changesets(LAYERS, model)

    mnt, upper, res = box.mount(tarballs[::-1])
    assert res.returncode == 0, res.stderr
    assert len(unpacked_lines(res)) == 3, res.stderr
    for d in layer_dirs_of(box.store, tarballs):
        overlay.register_lower(d)  # no write through the mount reaches them (checked after)
    with overlay.mount("kernel", klay) as kmount:
        ktree, ctree, mtree = (overlay.dump_tree(p) for p in (kmount.mnt, mnt, model))
        assert ktree == overlay.dump_tree(kmount.mnt)
        ctx = overlay.Context(klay.upper, upper, harness.uid, harness.gid,
                              lowers=tuple(layer_dirs_of(box.store, tarballs[::-1])))
        bad, ok = overlay.classify(overlay.compare_trees(ktree, ctree), ctx)
        assert not bad, "cowfs differs from the kernel:\n" + overlay.format_diffs(bad, ok)
        assert {x.name for _, x in ok} <= {"layer-store-nlink", "hardlink-ino"}
        mdiffs = overlay.compare_trees(comparable(mtree), comparable(ctree))
        mdiffs = [d for d in mdiffs if d.path != "."]  # the merged root is the upper's
        assert not mdiffs, "cowfs differs from the model:\n" + overlay.format_diffs(mdiffs, [])
        paths = sorted(p for p in ktree if p != ".")
        assert mtimes(mnt, paths) == mtimes(kmount.mnt, paths) == mtimes(model, paths)
        # what the layers say, spelled out (the oracles could share a blind spot)
        assert ctree["etc/passwd"]["xattrs"] == {"user.origin": "top"}
        assert ctree["etc/mime"]["xattrs"] == {"user.mime_type": "text/plain"}
        for gone in ("gone-dir", "lib", "etc/conf.d/a.conf", "opt/app/data.txt", "var/cache/x",
                     "usr/bin/tool-link", "dir2file/inner", "replaced/.wh.x"):
            assert gone not in ctree, gone
        assert ctree["replaced"]["type"] == "d" and ctree["dir2file"]["type"] == "f"
        assert "redo/old" not in ctree and "redo/new" in ctree
        assert ctree["refile"]["size"] == 4
        assert ctree["etc/motd"]["target"] == "/etc/issue"
        assert ctree["run/fifo"]["type"] == "p" and ctree["private"]["mode"] == "0600"
        assert not [p for p in ctree if os.path.basename(p).startswith(".wh.")]

        # the same changes on both; the results and the trees agree
        kres = overlay.run_ops(kmount.mnt, OPS)
        cres = overlay.run_ops(mnt, OPS)
        bad, ok = overlay.classify(overlay.compare_results(OPS, kres, cres), ctx)
        assert not bad, overlay.format_diffs(bad, ok)
        bad, ok = overlay.classify(overlay.compare_trees(overlay.dump_tree(kmount.mnt),
                                                         overlay.dump_tree(mnt)), ctx)
        assert not bad, overlay.format_diffs(bad, ok)

    # cowfs diff reads the mount's layers: the unpacked dirs
    r = cowfs("diff", mnt)
    assert r.returncode == 0, r.stderr
    assert "C etc/passwd" in r.stdout.splitlines() and "D etc/conf.d/b.conf" in r.stdout
    umount(mnt)
    offline = cowfs("diff", "--upper", upper, "--layer-store", box.store,
                    *[a for t in tarballs[::-1] for a in ("--lower", t)])
    assert offline.returncode == 0 and offline.stdout == r.stdout, offline.stderr
    r = cowfs("fsck", "--upper", upper, "--work", os.path.join(box.base, "work1"))
    assert r.returncode == 0, r.stdout + r.stderr

    # the tarballs and the unpacked layers are as they were; the changes are in the upper
    assert {t: file_state(t) for t in tarballs} == before
    layer_dirs = sorted(os.listdir(os.path.join(box.store, "layers", "sha256")))
    assert len(layer_dirs) == 3
    for i, t in enumerate(tarballs):
        digest = hashlib.sha256(open(t, "rb").read()).hexdigest()
        with open(os.path.join(box.store, "layers", "sha256", digest, "etc", "passwd")
                  if i != 1 else os.path.join(box.store, "layers", "sha256", digest,
                                              "usr", "bin", "tool"), "rb") as f:
            assert f.read() == [b"root:x:0:0\n", b"tool v2\n", b"root:x:0:0\nu:x:1000:1000\n"][i]
    with open(os.path.join(upper, "etc", "passwd"), "rb") as f:
        assert f.read() == b"changed\n"

    # identical content and metadata take their disk once: across layers and within one
    lay = layer_dirs_of(box.store, tarballs)
    same = os.stat(os.path.join(lay[0], "same.txt"))
    assert os.path.samestat(same, os.stat(os.path.join(lay[1], "same-too.txt")))
    assert os.path.samestat(os.stat(os.path.join(lay[0], "dup-in-layer-1")),
                            os.stat(os.path.join(lay[0], "dup-in-layer-2")))
    objects = os.listdir(os.path.join(box.store, "store", "sha256"))
    assert sum(os.path.samestat(same, os.stat(os.path.join(box.store, "store", "sha256", o)))
               for o in objects) == 1


def test_second_mount_reuses_the_layer(box):
    tarballs = write_layers(box.base, LAYERS, ["gzip", "zstd", "tar"])
    mnt, _, res = box.mount(tarballs[::-1])
    assert res.returncode == 0 and len(unpacked_lines(res)) == 3, res.stderr
    first = overlay.dump_tree(mnt)
    umount(mnt)
    state = store_state(box.store)
    mnt2, _, res = box.mount(tarballs[::-1])
    assert res.returncode == 0 and res.stderr == "", res.stderr  # nothing unpacked
    assert overlay.dump_tree(mnt2) == first
    umount(mnt2)
    assert store_state(box.store) == state  # not one inode or mtime changed


def _waiters(path: str) -> int:
    """How many flock(2) requests on PATH are blocked (/proc/locks: "->" lines)."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        return sum(1 for ln in f if "->" in ln and f" {dev} " in ln)


def test_two_mounts_at_once_unpack_once(box):
    """Both mounts are started while the store's unpack lock is held (by the test), so both
    wait for it; once it is let go, one unpacks and the other uses that layer."""
    big = [D("many")] + [E(f"many/f{i:05d}", f"file {i}\n" * 20) for i in range(3000)]
    (tarball,) = write_layers(box.base, [big], ["gzip"])
    layers = os.path.join(user_dir(box.store), "layers")
    user_dir(layers)
    results = []

    def one():
        results.append(box.mount([tarball]))

    threads = [threading.Thread(target=one) for _ in range(2)]
    fd = os.open(layers, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while _waiters(layers) < 2:
            assert time.monotonic() < deadline and all(t.is_alive() for t in threads), results
            time.sleep(0.02)
    finally:
        os.close(fd)  # lets them go
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and all(r.returncode == 0 for _, _, r in results), results
    assert all("waiting for another unpack" in r.stderr for _, _, r in results), results
    assert sum(len(unpacked_lines(r)) for _, _, r in results) == 1, [r.stderr for *_, r in results]
    trees = [overlay.dump_tree(m) for m, _, _ in results]
    assert trees[0] == trees[1] and len(trees[0]) == 3002
    for m, _, _ in results:
        umount(m)
    assert len(os.listdir(os.path.join(box.store, "layers", "sha256"))) == 1
    assert os.listdir(os.path.join(box.store, "layers", "tmp")) == []


def _tar(entries: list[dict]) -> bytes:
    e = overlay.env()
    return tar_bytes(entries, T1, e.uid, e.gid)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 5]  # within the data (a tar's tail is zero padding)


def _flipped(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 16]) + data[mid + 16:]


GOOD = [D("d"), E("d/f", "x" * 5000), E("d/g", "y" * 5000)]
BAD = {
    "absolute": (lambda: gzip.compress(_tar([E("/etc/evil", "x")])), "absolute path"),
    "dotdot": (lambda: gzip.compress(_tar([E("d/../../evil", "x")])), "'..'"),
    "below-symlink": (lambda: gzip.compress(_tar([E("esc", kind="l", link="/tmp"),
                                                  E("esc/evil", "x")])), "below a symlink"),
    "hardlink-outside": (lambda: gzip.compress(_tar([E("h", kind="h", link="/etc/passwd")])),
                         "absolute path"),
    "hardlink-dotdot": (lambda: gzip.compress(_tar([E("h", kind="h", link="../x")])), "'..'"),
    "hardlink-missing": (lambda: gzip.compress(_tar([E("h", kind="h", link="nope")])),
                         "no file of the layer"),
    "below-file": (lambda: gzip.compress(_tar([E("f", "x"), E("f/g", "y")])),
                   "below a non-directory"),
    "truncated-gzip": (lambda: _truncated(gzip.compress(_tar(GOOD))), "corrupt or truncated"),
    "corrupt-gzip": (lambda: _flipped(gzip.compress(_tar(GOOD), mtime=0)), "corrupt"),
    "truncated-zstd": (lambda: _truncated(compress(_tar(GOOD), "zstd")), "corrupt or truncated"),
    "truncated-tar": (lambda: _truncated(_tar(GOOD)), "corrupt or truncated"),
    "unknown-type": (lambda: gzip.compress(_tar([E("odd", "x", kind="?")])), "unknown type"),
    "bzip2": (lambda: __import__("bz2").compress(_tar(GOOD)), "bzip2-compressed"),
    "not-a-tarball": (lambda: b"just some text\n" * 100, "nor a layer tarball"),
    "empty": (lambda: b"", "nor a layer tarball"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tarball_is_refused_and_changes_nothing(box, case):
    make, says = BAD[case]
    (good,) = write_layers(box.base, [GOOD], ["gzip"])
    mnt, _, res = box.mount([good], upper=False)  # the store exists, with a layer
    assert res.returncode == 0, res.stderr
    umount(mnt)
    bad = os.path.join(box.base, f"bad-{case}")
    with open(bad, "wb") as f:
        f.write(make())
    os.chmod(bad, 0o444)
    state, bad_state = store_state(box.store), file_state(bad)
    mnt, up, res = box.mount([bad, good])
    refused(res, says)
    assert store_state(box.store) == state
    assert file_state(bad) == bad_state and os.listdir(up) == [] and not mounts_below(box.base)
    # a fresh store is not even created
    fresh = os.path.join(box.base, "fresh-store")
    res = cowfs("mount", "--layer-store", fresh, "--lower", bad, mnt)
    refused(res, says)
    assert not os.path.exists(fresh)


def test_rootless_drops_what_only_root_may_make(box):
    layer = [E("suid", "x", mode=0o4755), E("sgid", "x", mode=0o2755),
             E("dev", kind="c"), E("dev-link", kind="h", link="dev"), E("dev", "a file now"),
             E("sticky", kind="d", mode=0o1777),
             E("forged", "x", xattrs={"user.overlay.opaque": "y", "trusted.t": "1",
                                      "user.ok": "kept"}),
             D("o", xattrs={"user.overlay.opaque": "y"}), E("o/mine", "mine")]
    other = [D("o"), E("o/below", "still shown\n")]
    tarballs = write_layers(box.base, [other, layer], ["gzip", "gzip"])
    mnt, _, res = box.mount(tarballs[::-1])
    assert res.returncode == 0, res.stderr
    assert any("dropped 2 device nodes, 3 xattrs, 2 setuid/setgid bits" in ln
               for ln in res.stderr.splitlines()), res.stderr
    tree = overlay.dump_tree(mnt)
    assert tree["suid"]["mode"] == "0755" and tree["sgid"]["mode"] == "0755"
    assert tree["sticky"]["mode"] == "1777" and "dev-link" not in tree
    assert tree["dev"]["type"] == "f"
    assert tree["forged"]["xattrs"] == {"user.ok": "kept"}
    assert sorted(p for p in tree if p.startswith("o/")) == ["o/below", "o/mine"]
    assert {tree[p]["uid"] for p in tree} == {overlay.env().uid}
    umount(mnt)


def test_gc_keeps_what_layers_link(box):
    """A snapshot root used as the layer store: gc removes unlinked objects and a killed
    unpack's leftovers, never an object a layer links."""
    root = box.store
    snap = os.path.join(root, "snapshots", "20260101T000000Z-00000000")
    os.makedirs(snap)
    open(os.path.join(snap, "MANIFEST"), "w").close()
    os.symlink("snapshots/20260101T000000Z-00000000", os.path.join(root, "current"))
    for d, _, _ in os.walk(root):
        os.chown(d, overlay.env().uid, overlay.env().gid)
    tarballs = write_layers(box.base, LAYERS, ["gzip"] * 3)
    mnt, _, res = box.mount(tarballs[::-1])
    assert res.returncode == 0, res.stderr
    before = overlay.dump_tree(mnt)
    umount(mnt)
    objects = os.path.join(root, "store", "sha256")
    linked = sorted(os.listdir(objects))
    orphan = os.path.join(objects, "0" * 64)
    with open(orphan, "w") as f:
        f.write("nobody links me")
    killed = os.path.join(root, "layers", "tmp", "ab" * 32 + "-killed")
    os.makedirs(os.path.join(killed, "d"))
    os.link(os.path.join(objects, linked[0]), os.path.join(killed, "d", "f"))
    for d in (killed, os.path.join(killed, "d")):
        os.chown(d, overlay.env().uid, overlay.env().gid)
    os.chmod(killed, 0o555)  # as a layer's read-only dir
    r = cowfs("snapshot", "gc", root)
    assert r.returncode == 0, r.stderr
    assert f"gc: removed layers/tmp/{os.path.basename(killed)}" in r.stdout
    assert "1 store objects removed" in r.stdout, r.stdout
    assert sorted(os.listdir(objects)) == linked and not os.path.exists(killed)
    mnt, _, res = box.mount(tarballs[::-1])
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert overlay.dump_tree(mnt) == before
    umount(mnt)


def test_root_keeps_owners_devices_and_setuid(harness):
    """Unpacked by root (in this process), a layer keeps what rootless drops."""
    base = overlay.new_dir("root-unpack")
    layer = [E("suid", "x", mode=0o4755), E("dev", kind="c"), D("d", mode=0o2775),
             E("cap", "x", xattrs={"trusted.t": "1", "user.overlay.opaque": "y"})]
    data = tar_bytes(layer, T1, 1234, 5678)
    path = os.path.join(base, "layer.tar")
    with open(path, "wb") as f:
        f.write(data)
    said = []
    from cowfs import layertar

    dest = layertar.unpack(os.path.join(base, "store"), path, said.append)
    st = {n: os.lstat(os.path.join(dest, n)) for n in ("suid", "dev", "d", "cap")}
    assert {(s.st_uid, s.st_gid) for s in st.values()} == {(1234, 5678)}
    assert stat.S_IMODE(st["suid"].st_mode) == 0o4755
    assert stat.S_IMODE(st["d"].st_mode) == 0o2775
    assert stat.S_ISCHR(st["dev"].st_mode) and st["dev"].st_rdev == os.makedev(1, 3)
    assert os.listxattr(os.path.join(dest, "cap")) == ["trusted.t"]
    assert [ln for ln in said if "dropped 1 xattrs" in ln], said  # the forged overlay marker


def test_killed_unpack_leaves_no_layer_and_is_redone(box):
    """SIGKILL while a layer is unpacked: no layer under its digest's name; the next mount
    clears the leftover and unpacks it whole."""
    big = [D("many")] + [E(f"many/f{i:05d}", os.urandom(2000).hex()) for i in range(4000)]
    (tarball,) = write_layers(box.base, [big], ["gzip"])
    mnt = user_dir(os.path.join(box.base, "mnt-killed"))
    tmp = os.path.join(box.store, "layers", "tmp")
    e = overlay.env()
    proc = subprocess.Popen(overlay.as_user([e.cowfs_bin, "mount", "--layer-store", box.store,
                                             "--lower", tarball, mnt]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=e.base, env=overlay.user_env(e))
    deadline = time.monotonic() + 60
    while not (os.path.isdir(tmp) and any(
            len(os.listdir(os.path.join(tmp, n))) > 0 for n in os.listdir(tmp)
            if os.path.isdir(os.path.join(tmp, n)))):
        assert proc.poll() is None and time.monotonic() < deadline, "unpack not seen"
        time.sleep(0.005)
    proc.kill()
    proc.wait(timeout=30)
    assert os.listdir(tmp), "no leftover: the kill came too late to test anything"
    assert not os.listdir(os.path.join(box.store, "layers", "sha256"))
    assert not mounts_below(box.base)
    mnt, _, res = box.mount([tarball], upper=False)
    assert res.returncode == 0 and len(unpacked_lines(res)) == 1, res.stderr
    assert len(overlay.dump_tree(mnt)) == 4002 and os.listdir(tmp) == []
    umount(mnt)


def test_lowerdir_option_and_default_store(box):
    """-o lowerdir= takes tarballs too; without a store option the layers go to
    $XDG_CACHE_HOME/cowfs, and a tarball of the same bytes under another name is not unpacked
    again."""
    tarballs = write_layers(box.base, LAYERS, ["zstd", "gzip", "tar"])
    cache = user_dir(os.path.join(box.base, "xdg-cache"))
    mnt = user_dir(os.path.join(box.base, "mnt-o"))
    up, work = (user_dir(os.path.join(box.base, n)) for n in ("up-o", "work-o"))
    opts = f"lowerdir={':'.join(tarballs[::-1])},upperdir={up},workdir={work}"
    res = as_user("env", f"XDG_CACHE_HOME={cache}", overlay.env().cowfs_bin, "mount", "-o",
                  opts, mnt)
    assert res.returncode == 0 and len(unpacked_lines(res)) == 3, res.stderr
    assert len(os.listdir(os.path.join(cache, "cowfs", "layers", "sha256"))) == 3
    assert overlay.run_ops(mnt, [["read_file", "etc/conf.d/c.conf"]])[0]["ok"] == "c=1\n"
    umount(mnt)
    copy = os.path.join(box.base, "renamed-copy.tar.gz")
    shutil.copyfile(tarballs[1], copy)
    os.chmod(copy, 0o444)
    mnt2, _, res = box.mount([copy], "--layer-store", os.path.join(cache, "cowfs"),
                             upper=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    umount(mnt2)


def test_store_inside_the_upper_is_refused(box):
    (good,) = write_layers(box.base, [GOOD], ["gzip"])
    up = user_dir(os.path.join(box.base, "up-in"))
    res = cowfs("mount", "--layer-store", os.path.join(up, "store"), "--lower", good,
                "--upper", up, "--work", user_dir(os.path.join(box.base, "work-in")),
                user_dir(os.path.join(box.base, "mnt-in")))
    refused(res, "overlaps the upper")
    assert os.listdir(up) == [] and not mounts_below(box.base)


def test_full_disk_while_unpacking_leaves_nothing(box):
    """The store on a 1 MiB tmpfs, a layer of 4 MiB: exit status 1, one line, the store as it
    was (empty), nothing mounted; the tarball is untouched."""
    store_fs = overlay.mount_upper_fs(os.path.join(box.base, "storefs"), "tmpfs:size=1m")
    try:
        os.chown(store_fs, overlay.env().uid, overlay.env().gid)
        layer = [D("big")] + [E(f"big/f{i}", os.urandom(1 << 19).hex()) for i in range(4)]
        (tarball,) = write_layers(box.base, [layer], ["gzip"])
        before = file_state(tarball)
        mnt = user_dir(os.path.join(box.base, "mnt-full"))
        res = cowfs("mount", "--layer-store", os.path.join(store_fs, "s"), "--lower", tarball,
                    mnt)
        assert res.returncode == 1, (res.returncode, res.stderr)
        assert res.stderr.count("\n") == 1 and "No space left on device" in res.stderr, res.stderr
        assert os.listdir(store_fs) == [] and mounts_below(box.base) == [store_fs]
        assert file_state(tarball) == before
    finally:
        subprocess.run(["umount", store_fs], check=False, timeout=30)


def test_python_api_mounts_a_tarball(box):
    """cowfs.mounted() takes a layer tarball as its lower (through the CLI: the default store)."""
    (good,) = write_layers(box.base, [GOOD], ["zstd"])
    cache = user_dir(os.path.join(box.base, "api-cache"))
    code = ("import cowfs, os\n"
            f"with cowfs.mounted({good!r}) as m:\n"
            "    print(open(os.path.join(m, 'd', 'g')).read()[:3])\n")
    res = as_user("env", f"XDG_CACHE_HOME={cache}", overlay.env().python, "-c", code)
    assert res.returncode == 0 and res.stdout == "yyy\n", res.stderr
    assert len(os.listdir(os.path.join(cache, "cowfs", "layers", "sha256"))) == 1


def test_unusable_store_is_refused(box):
    """A store the user cannot write, or a file: exit 2, one line, nothing made."""
    (good,) = write_layers(box.base, [GOOD], ["gzip"])
    locked = os.path.join(box.base, "roots-dir")
    os.mkdir(locked, 0o755)  # root's
    a_file = os.path.join(box.base, "a-file")
    open(a_file, "w").close()
    mnt = user_dir(os.path.join(box.base, "mnt-u"))
    for store_dir, says in ((os.path.join(locked, "store"), "is not writable"),
                            (os.path.join(a_file, "store"), "is not a directory")):
        res = cowfs("mount", "--layer-store", store_dir, "--lower", good, mnt)
        refused(res, says)
        assert os.listdir(locked) == [] and not mounts_below(box.base)
