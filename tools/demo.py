#!/usr/bin/env python3
"""A guided tour of cowfs: `make demo` (or `python3 tools/demo.py` with cowfs installed).

Part 1, the mechanics: builds a small read-only "package cache" (the lower), mounts it with
cowfs over an empty upper in a temporary folder, changes things through the mount, shows what
landed in the upper in the kernel overlayfs on-disk format, shows that the lower did not change,
and unmounts.

Part 2, the job cowfs is for, end to end and offline: the week's snapshot of the most downloaded
projects (the bundled stats sample, wheels from Debian's /usr/share/python-wheels), pushed to an
OCI registry started on loopback (docker-registry), pulled into a second root as another machine
would, a sandbox mounted over it by an unprivileged user who pip installs from it and changes
it (privately: `cowfs diff`; the snapshot still verifies), then next week's build, whose push
sends only what changed.

Works as root (the sandbox then belongs to the user cowfs-test, as in the tests) or as a normal
user (then /dev/fuse must be usable by that user). Everything lives in one temporary folder that
is removed at the end; mounts and the registry are always undone.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LOWER = {
    "pip-cache/http-v2/4/b/3/4b3c7e.body": b"\x1f\x8b cached HTTP response body\n" * 8,
    "pip-cache/wheels/3a/7f/requests-2.32.3-py3-none-any.whl": b"PK\x03\x04 fake wheel\n" * 16,
    "site-packages/requests/__init__.py": '__version__ = "2.32.3"\nfrom .api import get\n',
    "site-packages/requests/api.py": "def get(url):\n    return f'GET {url}'\n",
    "site-packages/requests-2.32.3.dist-info/METADATA": "Name: requests\nVersion: 2.32.3\n",
    "site-packages/requests-2.32.3.dist-info/RECORD": "requests/__init__.py,,\nrequests/api.py,,\n",
    "site-packages/urllib3/__init__.py": '__version__ = "1.26.20"\n',
    "site-packages/urllib3/poolmanager.py": "class PoolManager: ...\n",
    "site-packages/urllib3/util/retry.py": "class Retry: ...\n",
}

#: this install's bin dir: "cowfs" in the commands shown is the cowfs of this checkout
BIN = os.path.dirname(os.path.abspath(sys.executable))
#: offline wheels every Debian python3-venv brings (pip, setuptools): the week's packages
WHEELS = "/usr/share/python-wheels"
#: who mounts the sandbox when the demo runs as root (make demo creates it, as make test does)
SANDBOX_USER = "cowfs-test"

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def sh(cmd: str, cwd: str, user: str | None = None) -> str:
    """Run CMD with bash in CWD, echo it and its output like a terminal session; as USER (a
    name) when given and we are root."""
    print(f"{DIM}{user + ' ' if user else ''}${RESET} {cmd}")
    argv = ["bash", "-c", cmd]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                "env", "-i", "HOME=/tmp", f"PATH={BIN}:/usr/bin:/bin", *argv]
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                       env=dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"))
    out = (r.stdout + r.stderr).rstrip("\n")
    if out:
        print(out)
    if r.returncode != 0:
        raise SystemExit(f"demo: command failed ({r.returncode}): {cmd}")
    return r.stdout


def tree_hash(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode} {st.st_mtime_ns}".encode())
            if name in filenames:
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def build_lower(root: str) -> None:
    for rel, data in LOWER.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


def cowfs(*args: str) -> list[str]:
    return [sys.executable, "-m", "cowfs", *args]


def is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def main() -> int:
    base = tempfile.mkdtemp(prefix="cowfs-demo-")
    os.chmod(base, 0o755)
    lower, upper, work, merged = (os.path.join(base, d) for d in ("lower", "upper", "work",
                                                                  "merged"))
    for d in (upper, work, merged):
        os.mkdir(d)
    build_lower(lower)
    before = tree_hash(lower)
    try:
        step(f"A read-only package cache (the lower) in {base}")
        sh("find lower -type f | sort", base)
        cmd = cowfs("mount", "--lower", lower, "--upper", upper, "--work", work, merged)
        step("Mount it with cowfs: a private writable view, changes go to the upper")
        print(f"{DIM}${RESET} cowfs mount --lower lower --upper upper --work work merged")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not is_mounted(merged):
            print(r.stdout + r.stderr, end="")
            raise SystemExit("demo: cowfs mount failed (is /dev/fuse usable by you? see README)")
        sh("findmnt -no SOURCE,FSTYPE merged", base)

        step("1. Read a lower file through the mount (nothing is copied)")
        sh("cat merged/site-packages/requests/__init__.py", base)
        sh("ls -A upper | wc -l", base)

        step("2. Modify it: the file is copied up first, parents included")
        sh("echo 'def post(url): ...' >> merged/site-packages/requests/api.py", base)
        sh("cat merged/site-packages/requests/api.py", base)
        sh("find upper -type f", base)

        step("3. Delete a lower file: a whiteout (character device 0/0) hides it")
        sh("rm merged/site-packages/requests-2.32.3.dist-info/RECORD", base)
        sh("ls merged/site-packages/requests-2.32.3.dist-info", base)

        step("4. Replace a lower directory: the new one is opaque")
        sh("rm -r merged/site-packages/urllib3", base)
        sh("mkdir merged/site-packages/urllib3", base)
        sh("echo '__version__ = \"2.2.3\"' > merged/site-packages/urllib3/__init__.py", base)
        sh("ls -R merged/site-packages/urllib3", base)

        step("What landed in the upper: kernel overlayfs (userxattr) format")
        sh("find upper -mindepth 1 | sort", base)
        sh("ls -l upper/site-packages/requests-2.32.3.dist-info | tail -n +2", base)
        sh("getfattr -d -m - upper/site-packages/urllib3", base)

        step("The lower did not change")
        sh("cat lower/site-packages/requests/api.py", base)
        sh("ls lower/site-packages/requests-2.32.3.dist-info lower/site-packages/urllib3", base)
        after = tree_hash(lower)
        print(f"lower tree hash before: {before}  after: {after}  "
              f"{'unchanged' if before == after else 'CHANGED!'}")
        if before != after:
            return 1

        step("Unmount")
        print(f"{DIM}${RESET} cowfs umount merged")
        subprocess.run(cowfs("umount", merged), check=True, timeout=60)

        step("The same upper under kernel overlayfs (same on-disk format)")
        if os.geteuid() == 0:
            os.mkdir(os.path.join(base, "work2"))
            sh("mount -t overlay overlay -o userxattr,lowerdir=lower,upperdir=upper,"
               "workdir=work2 merged", base)
            try:
                sh("ls merged/site-packages/urllib3 merged/site-packages/requests-2.32.3.dist-info"
                   " && tail -1 merged/site-packages/requests/api.py", base)
            finally:
                sh("umount merged", base)
        else:
            print("(as root: mount -t overlay overlay -o userxattr,lowerdir=lower,upperdir=upper,"
                  "workdir=work2 merged)")
        return pipeline(base)
    finally:
        if is_mounted(merged):
            subprocess.run(cowfs("umount", merged), capture_output=True, timeout=60)
        for _ in range(50):
            if not is_mounted(merged):
                break
            subprocess.run(["fusermount3", "-uz", merged], capture_output=True)
            time.sleep(0.1)
        if is_mounted(merged):
            print(f"demo: {merged} is still mounted; leaving {base} in place", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", base])


class Registry:
    """Debian's docker-registry on 127.0.0.1, a free port and storage below BASE."""

    def __init__(self, base: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.host = f"127.0.0.1:{s.getsockname()[1]}"
        config = os.path.join(base, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog: {{level: error}}\nhttp: {{addr: '{self.host}'}}\n"
                    f"storage: {{filesystem: {{rootdirectory: {base}/registry}}}}\n")
        self.log = open(os.path.join(base, "registry.log"), "wb")
        try:
            self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=self.log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SystemExit("demo: docker-registry is missing (make demo installs it as root: "
                             "apt-get install docker-registry)") from None
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"demo: docker-registry did not start (log: {self.log.name})")
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def pipeline(base: str) -> int:
    """Part 2 (module docstring): build, push, pull, sandbox, next week's push."""
    import cowfs  # noqa: PLC0415 - the package ships the stats sample

    sample = os.path.join(os.path.dirname(cowfs.__file__), "top-pypi-sample.csv")
    user = SANDBOX_USER if os.geteuid() == 0 else None
    home = os.path.join(base, "machine-b-user")  # the sandbox user's own dir
    os.mkdir(home)
    if user:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise SystemExit(f"demo: as root the sandbox is mounted by {user}: run `make demo` "
                             "(it creates the user)") from None
        os.chown(home, pw.pw_uid, pw.pw_gid)
    shutil.copy(sample, os.path.join(base, "top-pypi.csv"))
    build = f"--stats top-pypi.csv --no-index --find-links {WHEELS}"
    registry = Registry(base)
    image = f"{registry.host}/cowfs/pypi"
    mnt = os.path.join(home, "sandbox-mnt")
    try:
        step("Part 2: the weekly snapshot, from download stats to a sandbox (offline)")
        step("Week 1, build host: the most downloaded project that builds here")
        sh("head -6 top-pypi.csv", base)
        sh(f"cowfs snapshot build build-root --top 1 {build} 2>/dev/null", base)
        sh("python3 -c 'import json; r = json.load(open(\"build-root/current/BUILD.json\")); "
           "print(\"in:\", [i[\"project\"] for i in r[\"included\"]], "
           "\" left out:\", [e[\"project\"] for e in r[\"excluded\"]])'", base)

        step(f"Publish it to an OCI registry (docker-registry on {registry.host})")
        sh(f"cowfs snapshot push build-root {image}:week1", base)

        step("Machine B pulls it: missing blobs into its store, verified, then `current`")
        sh(f"cowfs snapshot pull {image}:week1 machine-b", base)
        sh("ls machine-b/current/wheels && cowfs verify machine-b", base)

        step(f"A sandbox on machine B, mounted by {user or 'you'} (no privileges)")
        sh(f"mkdir sandbox-mnt && cowfs sandbox mount --snapshot {base}/machine-b "
           "--state sandbox sandbox-mnt", home, user)
        sh("/usr/bin/python3 -m venv venv && venv/bin/pip install --force-reinstall "
           "--no-index --find-links sandbox-mnt/wheels setuptools | tail -1", home, user)
        sh("venv/bin/python -c 'import setuptools; print(setuptools.__version__)'", home, user)

        step("The sandbox changes its cache: privately")
        sh("rm sandbox-mnt/wheels/setuptools-*.whl && echo mine > sandbox-mnt/wheels/NOTES",
           home, user)
        sh("cowfs diff sandbox-mnt", home, user)
        sh("ls machine-b/current/wheels && cowfs verify machine-b", base)
        sh("cowfs sandbox umount sandbox-mnt", home, user)

        step("Week 2: the list moves on (the top 2); the push sends only what changed")
        sh(f"cowfs snapshot build build-root --top 2 {build} 2>/dev/null | tail -1", base)
        sh(f"cowfs snapshot push build-root {image}:week2", base)
        sh(f"cowfs snapshot pull {image}:week2 machine-b", base)
        sh("cowfs snapshot gc machine-b --keep 1", base)
        return 0
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True, timeout=60)
        registry.stop()


if __name__ == "__main__":
    sys.exit(main())
