"""`cowfs snapshot build ROOT --top N --stats FILE`: the N most downloaded projects that build.

Offline, on test_snapshot's find-links dir (tiny 1.0 and 2.0 wheels, the tinysrc sdist) and the
sdist of `badsrc`, whose build backend fails; plus a stats name no find-links dir has.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from test_snapshot import cowfs, current, wheels  # noqa: F401 - wheels is a fixture

from cowfs import popular

#: build backends whose build fails: badsrc's after its metadata (a C extension without a
#: compiler), badmeta's at once (pip builds the wheel to get the metadata)
FAILING_BUILD = """
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("{name}: no compiler here")
"""
METADATA_HOOK = """
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    import os
    info = os.path.join(metadata_directory, "badsrc-1.0.dist-info")
    os.mkdir(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: badsrc\\nVersion: 1.0\\n")
    return "badsrc-1.0.dist-info"
"""

#: download order: missing (900), badsrc (700), tinysrc (500), tiny (300), also-missing (100)
STATS = """\
project,downloads
tinysrc,500
no-such-project-cowfs,900
badsrc,700
tiny,300
also-missing-cowfs,100
"""
MISSING = "Could not find a version that satisfies the requirement {} (from versions: none)"


@pytest.fixture(scope="module")
def links(wheels, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixture
    """test_snapshot's find-links dir plus the sdists of badsrc and badmeta."""
    out = tmp_path_factory.mktemp("links") / "links"
    shutil.copytree(wheels, out)
    for name, backend in (("badsrc", FAILING_BUILD + METADATA_HOOK), ("badmeta", FAILING_BUILD)):
        members = {
            "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                              'backend-path = ["."]\n',
            "backend.py": backend.format(name=name),
            "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        }
        with tarfile.open(out / f"{name}-1.0.tar.gz", "w:gz") as tar:
            for member, text in members.items():
                info = tarfile.TarInfo(f"{name}-1.0/{member}")
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
    return out


def build_top(root: Path, links: Path, top: str, stats: str = STATS):
    (root.parent / "stats.csv").write_text(stats)
    return cowfs("snapshot", "build", str(root), "--top", top, "--stats",
                 str(root.parent / "stats.csv"), "--find-links", str(links), "--no-index")


@pytest.mark.parametrize("top, included, excluded", [
    (1, [("tinysrc", "1.0", 500)], ["no-such-project-cowfs", "badsrc"]),
    (2, [("tinysrc", "1.0", 500), ("tiny", "2.0", 300)], ["no-such-project-cowfs", "badsrc"]),
    # the list ends first: all that build, every failure on record
    (9, [("tinysrc", "1.0", 500), ("tiny", "2.0", 300)],
     ["no-such-project-cowfs", "badsrc", "also-missing-cowfs"]),
])
def test_top_n_in_download_order_failures_left_out(links, tmp_path, top, included, excluded):
    res = build_top(tmp_path / "root", links, str(top))
    assert res.returncode == 0, res.stdout + res.stderr
    snap = current(tmp_path / "root")
    record = json.loads((snap / "BUILD.json").read_text())
    assert record["top"] == top
    assert [(p["project"], p["version"], p["downloads"]) for p in record["included"]] == included
    reasons = {p["project"]: p["reason"] for p in record["excluded"]}
    assert list(reasons) == excluded
    for name in ("no-such-project-cowfs", "also-missing-cowfs"):
        if name in reasons:
            assert reasons[name] == MISSING.format(name)
    assert reasons["badsrc"] == "Failed building wheel for badsrc: badsrc: no compiler here"
    # what went in: its wheels (a failed run leaves none), pinned in requirements.txt
    assert sorted(os.listdir(snap / "wheels")) == sorted(
        f"{name}-{version}-py3-none-any.whl" for name, version, _ in included)
    assert (snap / "requirements.txt").read_text() == "".join(
        f"{name}=={version}\n" for name, version, _ in included)
    # no scratch dir left, and the record is sealed with the snapshot
    assert sorted(os.listdir(snap)) == ["BUILD.json", "MANIFEST", "MANIFEST.xxh3", "pip",
                                        "requirements.txt", "wheels"]
    assert " 100444 BUILD.json\n" in (snap / "MANIFEST").read_text()
    assert cowfs("verify", str(snap)).returncode == 0
    assert f"snapshot: left out badsrc: {reasons['badsrc']}" in res.stdout.splitlines()
    assert "badsrc: no compiler here" in res.stderr, "pip's own output is passed on"


def test_shipped_sample_builds_offline(tmp_path):
    """The shipped stats sample, as it is: of its top projects only pip's bundled ones
    (Debian's /usr/share/python-wheels) are at hand offline, so the others are left out."""
    bundled = Path("/usr/share/python-wheels")
    if not list(bundled.glob("setuptools-*.whl")):
        pytest.skip("no bundled setuptools wheel in /usr/share/python-wheels")
    sample = Path(popular.__file__).with_name("top-pypi-sample.csv")
    ranked = popular.ranked(str(sample), 1, None)
    assert 30 <= len(ranked) <= 50
    assert [p.downloads for p in ranked] == sorted((p.downloads for p in ranked), reverse=True)
    res = cowfs("snapshot", "build", str(tmp_path / "root"), "--top", "1", "--stats", str(sample),
                "--find-links", str(bundled), "--no-index")
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((current(tmp_path / "root") / "BUILD.json").read_text())
    [setuptools] = record["included"]
    assert setuptools["project"] == "setuptools"
    names = [p.name for p in ranked]
    assert [p["project"] for p in record["excluded"]] == names[:names.index("setuptools")]
    assert all(p["reason"] == MISSING.format(p["project"]) for p in record["excluded"])


def test_nothing_builds_is_a_failed_build(links, tmp_path):
    root = tmp_path / "root"
    res = build_top(root, links, "3", "project,downloads\nbadsrc,7\nbadmeta,6\n"
                                      "no-such-project-cowfs,5\n")
    assert res.returncode == 1, res.stdout + res.stderr
    assert [line for line in res.stdout.splitlines() if "left out" in line] == [
        "snapshot: left out badsrc: Failed building wheel for badsrc: badsrc: no compiler here",
        "snapshot: left out badmeta: metadata-generation-failed: badmeta: no compiler here",
        f"snapshot: left out no-such-project-cowfs: {MISSING.format('no-such-project-cowfs')}"]
    assert res.stderr.splitlines()[-1] == "cowfs: snapshot build failed: no project could be built"
    assert os.listdir(root / "snapshots") == [] and not (root / "current").exists()


@pytest.mark.parametrize("args, stats, says", [
    (["--top", "2"], None, "--top needs --stats FILE: the download counts to rank by"),
    (["--stats", "{s}"], STATS, "--stats needs --top N: how many projects to build"),
    (["--top", "2", "--stats", "{s}", "--requirements", "{s}"], STATS,
     "--stats and --requirements exclude each other: one list or the other"),
    (["--top", "0", "--stats", "{s}"], STATS, "--top must be at least 1, not 0"),
    (["--top", "-3", "--stats", "{s}"], STATS, "--top must be at least 1, not -3"),
    (["--top", "many", "--stats", "{s}"], STATS, "argument --top: invalid int value: 'many'"),
    (["--top", "2", "--stats", "{tmp}/nope.csv"], None,
     "cannot read stats file {tmp}/nope.csv: No such file or directory"),
    (["--top", "2", "--stats", "{s}"], "download_count,project\n5,tiny\n",
     "stats file {s} line 1: header is 'download_count,project', expected 'project,downloads'"),
    (["--top", "2", "--stats", "{s}"], "", "stats file {s} line 1: header is '', expected "
                                           "'project,downloads'"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\n", "stats file {s} lists no projects"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\ntiny,5\ntinysrc,4,extra\n",
     "stats file {s} line 3: 3 fields, expected 2 (project,downloads)"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\ntiny,lots\n",
     "stats file {s} line 2: downloads 'lots' is not a whole number"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\ntiny,-5\n",
     "stats file {s} line 2: downloads '-5' is not a whole number"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\n--index-url=http://x,5\n",
     "stats file {s} line 2: '--index-url=http://x' is not a project name"),
    (["--top", "2", "--stats", "{s}"], "project,downloads\nTiny,5\n\ntiny,4\n",
     "stats file {s} line 4: tiny is listed twice (first on line 2)"),
    (["--top", "2", "--stats", "{s}"], b"project,downloads\nt\xffny,5\n",
     "stats file {s} is not UTF-8 text"),
])
def test_bad_input(tmp_path, args, stats, says):
    """One line, exit status 2, nothing created (the stats file is outside the test dir)."""
    s = tmp_path.parent / f"{tmp_path.name}-stats.csv"
    if isinstance(stats, str):
        s.write_text(stats)
    elif stats is not None:
        s.write_bytes(stats)
    res = cowfs("snapshot", "build", str(tmp_path / "root"),
                *(a.format(s=s, tmp=tmp_path) for a in args))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"cowfs: {says.format(s=s, tmp=tmp_path)}"]
    assert os.listdir(tmp_path) == [], "nothing is created"
