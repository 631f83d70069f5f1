"""Snapshots through an OCI registry: `cowfs snapshot push ROOT REF` and `pull REF ROOT`.

A snapshot travels as one OCI image manifest (REF = REGISTRY/REPO:TAG):

    mediaType     application/vnd.oci.image.manifest.v1+json
    artifactType  application/vnd.cowfs.snapshot.v1
    config        application/vnd.cowfs.snapshot.index.v1+json   the index (below)
    layers        application/vnd.cowfs.manifest.v1              MANIFEST
                  application/vnd.cowfs.manifest-seal.v1         MANIFEST.xxh3
                  application/vnd.cowfs.file.v1                  one per distinct file content
    annotations   dev.cowfs.snapshot.id: <id> (the same on every machine that pulls it),
                  org.opencontainers.image.created

The index is JSON, {"id": ID, "entries": [[PATH, MODE, DIGEST], ...]} in MANIFEST order: PATH
encoded as in MANIFEST, MODE octal ("040555", "100444", "100555"), DIGEST "sha256:<hex>" or
null for a directory. A file blob's digest is its store object's name (store.py), so the
registry and every store hold one copy of a content, whatever its paths and snapshots.

push uploads the blobs the registry lacks (a HEAD first: a weekly push sends what changed).
pull fetches the blobs the local store lacks (a few threads, each blob retried), each into the
store by store.add_object (its sha256 checked before it gets a name), links the snapshot
together under ROOT/snapshots/.building-*, seals it, checks it like `cowfs verify`, and only
then renames it to <id> and switches ROOT/current (snapshot.publish). Pulls into one ROOT take
turns (ROOT/store/pull.lock) and hold the ROOT lock shared as a build does (store.root_lock:
`cowfs snapshot gc` waits); a killed pull leaves complete objects, which the next one keeps,
and partial ones in ROOT/store/tmp, which it discards.

Plain HTTP for localhost, 127.0.0.0/8 and [::1] only; HTTPS (certificates checked, requests'
REQUESTS_CA_BUNDLE honoured) everywhere else. Credentials: COWFS_REGISTRY_USER and
COWFS_REGISTRY_PASSWORD, else the docker config (~/.docker/config.json, $DOCKER_CONFIG).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import oras.container
import oras.provider
import oras.utils
import requests

from . import manifest, snapshot, store
from .config import UsageError
from .snapshot import SnapshotError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cowfs.snapshot.v1"
INDEX_TYPE = "application/vnd.cowfs.snapshot.index.v1+json"
MANIFEST_TYPE = "application/vnd.cowfs.manifest.v1"
SEAL_TYPE = "application/vnd.cowfs.manifest-seal.v1"
FILE_TYPE = "application/vnd.cowfs.file.v1"
ID_ANNOTATION = "dev.cowfs.snapshot.id"
TITLE_ANNOTATION = "org.opencontainers.image.title"
USER_ENV, PASSWORD_ENV = "COWFS_REGISTRY_USER", "COWFS_REGISTRY_PASSWORD"
CREDENTIALS = f"credentials: {USER_ENV} and {PASSWORD_ENV}, else ~/.docker/config.json"

#: Blob transfers at once: the fsyncs, the registry's reads and the round trips overlap.
#: Measured on 2 CPUs (load 6), 1 GiB of 5 MiB blobs over loopback: 2 threads 4.8 s, 4: 4.0 s,
#: 8: 3.3 s.
JOBS = 8
#: The pauses before the second and the third (last) try of a transfer: a registry that
#: restarts is back within seconds; one that is down fails the command in ~3 s, not oras's 2
#: minutes.
BACKOFF = (0.5, 2.0)
#: Seconds to connect, and between two reads of an answer.
TIMEOUT = 30
_CHUNK = 1 << 20
#: The file modes a snapshot holds (snapshot._seal) and so the only ones a pull accepts.
_MODES = {0o040555, 0o100444, 0o100555}

_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF = re.compile(rf"(?P<host>{_HOST}(?::[0-9]+)?)/(?P<repo>{_PATH_COMPONENT}"
                  rf"(?:/{_PATH_COMPONENT})*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")

# oras logs a registry's error messages to stderr itself; cowfs says one line of its own
logging.getLogger("oras").setLevel(logging.CRITICAL)


class _Registry(oras.provider.Registry):
    # oras retries every request that fails 5 times, 3 s to 83 s apart (2 minutes against a
    # registry that is down), and cannot retry a body that breaks off: cowfs retries whole
    # blob transfers itself (_retrying). oras's request and authentication logic is kept.
    do_request = oras.provider.Registry.do_request.__wrapped__


class _Retry(Exception):
    """A transfer that may succeed if tried again (a 5xx, a connection error, a bad body)."""


@dataclass(frozen=True)
class Ref:
    host: str
    repo: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"


@dataclass(frozen=True)
class Pushed:
    id: str
    uploaded: int  # blobs sent (the index, MANIFEST and MANIFEST.xxh3 included)
    bytes: int  # their bytes (the OCI manifest not counted)
    skipped: int  # blobs the registry had already
    seconds: float


@dataclass(frozen=True)
class Pulled:
    path: str
    fetched: int  # blobs downloaded into the store
    bytes: int
    present: int  # blobs the store had (either mode)
    seconds: float


def parse_ref(text: str) -> Ref:
    m = _REF.fullmatch(text)
    # as docker reads a name: its first part is a registry only with a "." or ":" in it (or
    # localhost); "team/cache:v1" names no registry, not the host "team"
    if not m or not re.search(r"[.:\[]", m["host"]) and m["host"] != "localhost":
        raise UsageError(f"bad reference {text!r}: expected REGISTRY/REPO:TAG, e.g. "
                         "registry.example.com/team/pkgcache:2026-12-06")
    return Ref(m["host"], m["repo"], m["tag"])


def is_loopback(host: str) -> bool:
    """Whether REGISTRY (host[:port]) is this machine: the one place plain HTTP is used."""
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _Client:
    """One registry repository: oras's Registry with credentials, and checked answers."""

    def __init__(self, ref: Ref) -> None:
        self.ref = ref
        self.container = oras.container.Container(f"{ref.repo}:{ref.tag}", registry=ref.host)
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        if (user is None) != (password is None):
            raise UsageError(f"set both {USER_ENV} and {PASSWORD_ENV}, or neither")
        insecure = is_loopback(ref.host)
        try:
            ping = requests.get(f"{'http' if insecure else 'https'}://{ref.host}/v2/",
                                timeout=TIMEOUT)
        except requests.RequestException as e:
            raise SnapshotError(f"cannot reach registry {ref.host}: {_reason(e)}") from None
        # oras answers a Bearer challenge (Docker Hub, GHCR, Harbor) with its token backend and
        # a Basic one (htpasswd: docker-registry, Artifactory) with its basic backend
        challenge = ping.headers.get("Www-Authenticate", "").lower()
        self.oras = _Registry(ref.host, insecure=insecure,
                              auth_backend="basic" if challenge.startswith("basic") else "token")
        # oras sets no timeout: a registry that stops answering would hang the command forever
        self.oras.session.request = functools.partial(self.oras.session.request,
                                                      timeout=TIMEOUT)
        if user is not None:
            self.oras.auth.set_basic_auth(user, password)
        else:
            self.oras.auth.load_configs(self.container)
        if challenge.startswith("basic"):
            if not getattr(self.oras.auth, "_basic_auth", None):  # oras: an AttributeError
                raise UsageError(f"registry {ref.host} wants a user and password: "
                                 f"{CREDENTIALS}")
            # oras sends Basic credentials only after a 401, and then again a body that was a
            # file already read to its end: send them with every request
            self.oras.session.headers.update(self.oras.auth.get_auth_header())

    def _request(self, method: str, url: str, **kw) -> requests.Response:
        """One request; _Retry for what a second try may fix."""
        try:
            resp = self.oras.do_request(url, method, **kw)
        except requests.RequestException as e:
            raise _Retry(f"registry {self.ref.host}: {_reason(e)}") from None
        except ValueError as e:  # oras: a challenge it cannot answer
            raise UsageError(f"{self.ref}: {e} ({CREDENTIALS})") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Retry(f"registry {self.ref.host} answered {resp.status_code} {resp.reason} "
                         f"to {method} {url}")
        if resp.status_code in (401, 403):
            raise UsageError(f"{self.ref}: access denied ({resp.status_code}; {CREDENTIALS})")
        return resp

    def request(self, method: str, url: str, ok: Iterable[int], **kw) -> requests.Response:
        resp = self._request(method, url, **kw)
        if resp.status_code not in ok:
            raise SnapshotError(f"registry {self.ref.host} answered {resp.status_code} "
                                f"{resp.reason} to {method} {url}")
        return resp

    def blob_url(self, digest: str) -> str:
        return f"{self.oras.prefix}://{self.container.get_blob_url(digest)}"

    def upload_url(self) -> str:
        return f"{self.oras.prefix}://{self.container.upload_blob_url()}"

    def manifest_url(self) -> str:
        return f"{self.oras.prefix}://{self.container.manifest_url()}"


def _reason(e: BaseException) -> str:
    """'Connection refused', not the three exceptions requests wraps it in."""
    text = str(e)
    m = re.search(r"\[Errno -?[0-9]+\] ([^'\")]+)", text)
    return m[1] if m else text


@contextlib.contextmanager
def _failing(what: str):
    """An OSError (a full disk, an unreadable file) fails the command in one line: exit 1."""
    try:
        yield
    except OSError as e:
        raise SnapshotError(f"{what} failed: {e}") from None


def _retrying(what: str, attempt: Callable[[], object]) -> object:
    for pause in BACKOFF:
        try:
            return attempt()
        except _Retry:
            time.sleep(pause)
    try:
        return attempt()
    except _Retry as e:
        raise SnapshotError(f"{what}: {e}") from None


def _in_parallel(fn: Callable, items: list) -> list:
    """fn(item) for each item on JOBS threads; the first error cancels what has not started."""
    with ThreadPoolExecutor(JOBS) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _descriptor(media_type: str, data_digest: str, size: int, title: str | None = None) -> dict:
    d = {"mediaType": media_type, "digest": f"sha256:{data_digest}", "size": size}
    if title:
        d["annotations"] = {TITLE_ANNOTATION: title}
    return d


# ---------------------------------------------------------------------------------------------
# push


def push(target: str, ref_text: str, say: Callable[[str], None] = print) -> Pushed:
    """Publish the snapshot target names (a snapshot dir, or a ROOT: its current one)."""
    started = time.monotonic()
    snap = snapshot.resolve(target)
    ref = parse_ref(ref_text)
    with _failing(f"push of {snap}"):
        return _push(snap, ref, say, started)


def _push(snap: str, ref: Ref, say: Callable[[str], None], started: float) -> Pushed:
    snap_id = os.path.basename(os.path.normpath(snap))
    with open(os.path.join(snap, manifest.MANIFEST), "rb") as f:
        manifest_data = f.read()
    if not snapshot.is_id_of(snap_id, manifest_data):
        raise UsageError(f"{snap}: its name is not the id of a snapshot with its MANIFEST "
                         "(DATE-HASH, as cowfs snapshot build names it)")
    # A damaged snapshot is never published: pullers would fetch it only to reject it.
    report = manifest.verify(snap)
    if report.differences:
        raise SnapshotError(f"snapshot {snap} does not match its MANIFEST "
                            f"({report.differences[0]}, ...): run cowfs verify; not pushed")
    entries = manifest.parse(manifest_data)
    base = os.fsencode(snap)
    files = [p for p, e in entries.items() if e.digest is not None]
    # hashlib releases the GIL: threads hash in parallel
    digest_of = dict(zip(files, _in_parallel(lambda p: store.sha256_of(os.path.join(base, p)),
                                             files), strict=True))
    index = {"id": snap_id, "entries": [
        [manifest.encode_path(p), f"{e.mode:06o}",
         f"sha256:{digest_of[p]}" if e.digest is not None else None]
        for p, e in entries.items()]}
    file_blobs = {d: (os.path.join(base, p), entries[p].size) for p, d in digest_of.items()}

    client = _Client(ref)
    blobs = dict(file_blobs)
    with tempfile.NamedTemporaryFile(prefix="cowfs-index-") as tmp:
        tmp.write(json.dumps(index, separators=(",", ":")).encode())
        tmp.flush()
        meta = []
        for media_type, path, title in (
                (INDEX_TYPE, tmp.name, None),
                (MANIFEST_TYPE, os.path.join(snap, manifest.MANIFEST), manifest.MANIFEST),
                (SEAL_TYPE, os.path.join(snap, manifest.SEAL), manifest.SEAL)):
            digest, size = store.sha256_of(path), os.path.getsize(path)
            meta.append(_descriptor(media_type, digest, size, title))
            blobs[digest] = (path, size)
        sent = _in_parallel(lambda item: _upload(client, item[0], *item[1]), list(blobs.items()))
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": meta[0],
        "layers": meta[1:] + [_descriptor(FILE_TYPE, d, size)
                              for d, (_, size) in file_blobs.items()],
        "annotations": {ID_ANNOTATION: snap_id, "org.opencontainers.image.created":
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    _retrying(f"push {ref}", lambda: client.request(
        "PUT", client.manifest_url(), (200, 201), json=doc,
        headers={"Content-Type": OCI_MANIFEST}))
    uploaded = [n for n in sent if n is not None]
    say(f"push: {ref} = snapshot {snap_id}: uploaded {len(uploaded)} blobs, "
        f"{sum(uploaded)} bytes; skipped {len(sent) - len(uploaded)} blobs the registry has")
    return Pushed(snap_id, len(uploaded), sum(uploaded), len(sent) - len(uploaded),
                  time.monotonic() - started)


def _upload(client: _Client, digest: str, path: str | bytes, size: int) -> int | None:
    """Upload one blob unless the registry has it; its size if sent, None if skipped."""
    def attempt() -> int | None:
        url = client.blob_url(f"sha256:{digest}")
        if client.request("HEAD", url, (200, 404)).status_code == 200:
            return None
        # Below oras's put_upload, which reads the whole file into memory (4 threads on big
        # wheels...): POST opens an upload session, PUT ?digest= streams the file and the
        # registry checks its digest.
        post = client.request("POST", client.upload_url(), (202,),
                              headers={"Content-Type": "application/octet-stream"})
        session = urllib.parse.urljoin(post.url, post.headers["Location"])
        with open(path, "rb") as f:
            # requests sends an empty file chunked, which the registry waits on forever
            put = oras.utils.append_url_params(session, {"digest": f"sha256:{digest}"})
            client.request("PUT", put, (201,), data=f if size else b"",
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(size)})
        return size
    return _retrying(f"push of blob sha256:{digest}", attempt)


# ---------------------------------------------------------------------------------------------
# pull


def pull(ref_text: str, root: str, say: Callable[[str], None] = print) -> Pulled:
    """Fetch the snapshot ref names into root and point root/current at it (module docstring)."""
    started = time.monotonic()
    ref = parse_ref(ref_text)
    root = os.path.abspath(root)
    snapshot.check_root(root)
    client = _Client(ref)
    doc = _fetch_manifest(client)
    try:
        layers = {d["mediaType"]: d for d in doc["layers"] if d["mediaType"] != FILE_TYPE}
        index = json.loads(_fetch_small(client, doc["config"]))
        manifest_data = _fetch_small(client, layers[MANIFEST_TYPE])
        seal_data = _fetch_small(client, layers[SEAL_TYPE])
        snap_id = doc["annotations"][ID_ANNOTATION]
        sizes = {_digest_hex(d["digest"]): int(d["size"])
                 for d in doc["layers"] if d["mediaType"] == FILE_TYPE}
        entries = _parse_index(index, sizes)
        if index["id"] != snap_id or not snapshot.is_id_of(snap_id, manifest_data):
            raise ValueError(f"snapshot id {snap_id!r} does not match its index or MANIFEST")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SnapshotError(f"{ref}: malformed cowfs snapshot ({type(e).__name__}: {e})") \
            from None
    with _failing(f"pull of {ref}"):
        os.makedirs(os.path.join(root, snapshot.SNAPSHOTS), exist_ok=True)
        tmp_dir = store.ensure(root)
        # pulls into ROOT take turns; gc waits while one adds objects and links them
        with _pull_lock(root, say), store.root_lock(
                root, waiting=lambda: say("pull: waiting for cowfs snapshot gc")):
            for name in os.listdir(tmp_dir):  # a killed pull's partial objects: only pulls
                os.unlink(os.path.join(tmp_dir, name))  # write here, and they take turns
            fetched, present = _fetch_objects(client, root, entries, sizes)
            say(f"pull: {ref} = snapshot {snap_id}: fetched {len(fetched)} blobs, "
                f"{sum(fetched)} bytes; {present} in the store already")
            final = os.path.join(root, snapshot.SNAPSHOTS, snap_id)
            building = _materialise(root, snap_id, entries, manifest_data, seal_data)
            snapshot.publish(root, building, final, say)
    return Pulled(final, len(fetched), sum(fetched), present, time.monotonic() - started)


def _digest_hex(digest: str) -> str:
    """The hex of "sha256:<64 hex>" (the store's object name); ValueError for anything else."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"digest {digest!r} is not a sha256 one")
    return digest[7:]


def _fetch_manifest(client: _Client) -> dict:
    resp = _retrying(f"pull of {client.ref}", lambda: client.request(
        "GET", client.manifest_url(), (200, 404), headers={"Accept": OCI_MANIFEST}))
    if resp.status_code == 404:
        raise UsageError(f"{client.ref}: no such repository or tag in the registry")
    try:
        doc = resp.json()
        kind = doc.get("artifactType") or doc["config"]["mediaType"]
    except (ValueError, KeyError, TypeError, AttributeError):
        kind = None
    if kind != ARTIFACT_TYPE:
        raise UsageError(f"{client.ref} is not a cowfs snapshot (artifact type {kind})")
    return doc


def _fetch_small(client: _Client, descriptor: dict) -> bytes:
    """A blob read into memory (the index, MANIFEST, its seal), its digest checked."""
    digest = _digest_hex(descriptor["digest"])

    def attempt() -> bytes:
        data = client.request("GET", client.blob_url(descriptor["digest"]), (200,)).content
        if hashlib.sha256(data).hexdigest() != digest:
            raise _Retry(f"blob {descriptor['digest']} arrived damaged (sha256 "
                         f"{hashlib.sha256(data).hexdigest()})")
        return data
    return _retrying(f"pull of {client.ref}", attempt)


def _parse_index(index: dict, sizes: dict[str, int]) -> list[tuple[bytes, int, str | None]]:
    """(path, mode, sha256 hex or None) of each entry, parents first. ValueError for a path
    that would leave the snapshot dir, a mode a snapshot cannot hold, a blob not in layers."""
    out: list[tuple[bytes, int, str | None]] = []
    dirs = {b""}
    for text, mode_text, digest in index["entries"]:
        path, mode = manifest.decode_path(text), int(mode_text, 8)
        names = path.split(b"/")
        if any(n in (b"", b".", b"..") or b"\0" in n for n in names) or \
                path.rpartition(b"/")[0] not in dirs or path in (b"MANIFEST", b"MANIFEST.xxh3") \
                or mode not in _MODES or (digest is None) != stat.S_ISDIR(mode):
            raise ValueError(f"bad index entry {text!r} {mode_text!r}")
        if digest is None:
            dirs.add(path)
        elif _digest_hex(digest) not in sizes:
            raise ValueError(f"index entry {text!r}: blob {digest} is not in the manifest")
        out.append((path, mode, digest and digest[7:]))
    return out


def _pull_lock(root: str, say: Callable[[str], None]):
    fd = os.open(os.path.join(root, store.STORE, "pull.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return store.locked(fd, exclusive=True,
                        waiting=lambda: say(f"pull: waiting for another pull into {root}"))


def _fetch_objects(client: _Client, root: str, entries: list, sizes: dict[str, int]
                   ) -> tuple[list[int], int]:
    """Add the objects entries need that the store lacks: a copy of the object with the other
    mode if there is one, else a download. Returns the sizes downloaded, and how many were
    present."""
    wanted = sorted({(digest, bool(mode & 0o111)) for _, mode, digest in entries if digest})
    missing = [(d, x) for d, x in wanted if not os.path.exists(store.object_path(root, d, x))]
    remote = []
    for digest, executable in missing:
        other = store.object_path(root, digest, not executable)
        if os.path.exists(other):
            with open(other, "rb") as src:
                store.add_object(root, digest, executable, lambda f: shutil.copyfileobj(src, f))
        else:
            remote.append((digest, executable))
    fetched = _in_parallel(lambda item: _fetch_blob(client, root, *item, sizes[item[0]]), remote)
    return fetched, len(wanted) - len(remote)


def _fetch_blob(client: _Client, root: str, digest: str, executable: bool, size: int) -> int:
    def attempt() -> int:
        with client.request("GET", client.blob_url(f"sha256:{digest}"), (200,),
                            stream=True) as resp:
            def write(f) -> None:
                got = 0
                for chunk in resp.iter_content(_CHUNK):
                    got += len(chunk)
                    if got > size:  # a registry streaming garbage does not fill the disk
                        raise ValueError(f"more than its {size} bytes")
                    f.write(chunk)
            try:
                store.add_object(root, digest, executable, write)
            except requests.RequestException as e:
                raise _Retry(f"registry {client.ref.host}: {_reason(e)}") from None
            except ValueError as e:
                raise _Retry(f"blob sha256:{digest} arrived damaged: {e}") from None
        return size
    return _retrying(f"pull of {client.ref}", attempt)


def _materialise(root: str, snap_id: str, entries: list, manifest_data: bytes,
                 seal_data: bytes) -> str:
    """The snapshot linked together from the store under snapshots/.building-*, sealed as a
    build seals it and verified; its path. SnapshotError if it does not verify."""
    building = tempfile.mkdtemp(prefix=f"{snapshot.BUILDING_PREFIX}{snap_id}-",
                                dir=os.path.join(root, snapshot.SNAPSHOTS))
    try:
        base = os.fsencode(building)
        for path, mode, digest in entries:
            if digest is None:
                os.mkdir(os.path.join(base, path), 0o700)
            else:
                store.link_out(root, digest, bool(mode & 0o111), os.path.join(base, path))
        manifest.create(os.path.join(building, manifest.MANIFEST), manifest_data)
        manifest.create(os.path.join(building, manifest.SEAL), seal_data)
        for path, mode, digest in reversed(entries):  # children before their read-only parent
            if digest is None:
                os.chmod(os.path.join(base, path), stat.S_IMODE(mode))
        os.chmod(building, 0o555)
        report = manifest.verify(building)
        if report.differences:
            raise SnapshotError(f"pulled snapshot {snap_id} does not match its MANIFEST "
                                f"({report.differences[0]}, {len(report.differences)} in all): "
                                "current not switched")
    except BaseException:
        snapshot.remove_tree(building)
        raise
    return building
