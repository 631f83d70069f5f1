"""A real OCI registry for tests and bench/registry.py: Debian's docker-registry (the CNCF
distribution registry) on 127.0.0.1, a free port and a temp storage dir; and snapshots made
from given file contents (sealed as `cowfs snapshot build` seals them, without pip)."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from cowfs import snapshot

BINARY = "/usr/bin/docker-registry"


class RegistryServer:
    """docker-registry serving storage/ on 127.0.0.1:<free port>; start() waits for /v2/."""

    def __init__(self, base: Path, user: str | None = None, password: str = "") -> None:
        """With user: Basic authentication (htpasswd) for that user and password."""
        self.base = base
        self.user, self.password = user, password
        self.storage = base / "storage"
        self.config = base / "config.yml"
        self.log = base / "registry.log"
        self.proc: subprocess.Popen | None = None
        with socket.socket() as s:  # the port stays free when we close: nobody else binds
            s.bind(("127.0.0.1", 0))  # ports from the ephemeral range by chance
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"

    def start(self) -> RegistryServer:
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"{BINARY} missing: apt-get install docker-registry (make deps)")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '{self.host}'}}\n")
        if self.user:
            with warnings.catch_warnings():  # crypt: deprecated, the one bcrypt in the stdlib
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
                hashed = crypt.crypt(self.password, crypt.mksalt(crypt.METHOD_BLOWFISH))
            (self.base / "htpasswd").write_text(f"{self.user}:{hashed}\n")
            with open(self.config, "a") as f:
                f.write(f"auth: {{htpasswd: {{realm: cowfs-test, path: {self.base}/htpasswd}}}}\n")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([BINARY, "serve", str(self.config)], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return self
            except urllib.error.HTTPError as e:
                if e.code == 401:  # it answers, and wants credentials
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.host}: "
                                   f"{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def blob_data(self, digest: str) -> Path:
        """Where the filesystem driver keeps the blob of 'sha256:<hex>'."""
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def make_snapshot(root: Path, files: dict[str, bytes]) -> Path:
    """A snapshot of files (relative path: content; a name ending in .sh is made executable)
    under root, sealed into root's store as a build seals it; root/current points at it."""
    snaps = root / snapshot.SNAPSHOTS
    snaps.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=snapshot.BUILDING_PREFIX, dir=snaps))
    for rel, data in files.items():
        p = building / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if rel.endswith(".sh"):
            p.chmod(0o755)
    snapshot._seal(str(root), str(building))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = snaps / f"{stamp}-{snapshot._manifest_hash(str(building))[:8]}"
    snapshot.publish(str(root), str(building), str(final), say=lambda _: None)
    return final
