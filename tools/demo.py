#!/usr/bin/env python3
"""A guided tour of cowfs: `make demo` (or `python3 tools/demo.py` with cowfs installed).

Builds a small read-only "package cache" (the lower), mounts it with cowfs over an empty upper
in a temporary folder, changes things through the mount, shows what landed in the upper in the
kernel overlayfs on-disk format, shows that the lower did not change, and unmounts. Works as
root or as a normal user (then /dev/fuse must be usable by that user). Everything lives in one
temporary folder that is removed at the end; the mount is always undone.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time

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

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def sh(cmd: str, cwd: str) -> str:
    """Run CMD with bash in CWD, echo it and its output like a terminal session."""
    print(f"{DIM}${RESET} {cmd}")
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True)
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
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
