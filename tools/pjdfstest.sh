#!/bin/bash
# Run pjdfstest (the POSIX conformance suite: github.com/pjd/pjdfstest) on cowfs, kernel overlayfs
# or fuse-overlayfs, as root, inside a private mount namespace so no mount outlives the run.
#
#   tools/pjdfstest.sh PJDFSTEST_DIR [cowfs|kernel|fuse-overlayfs] [TEST ...]
#
# PJDFSTEST_DIR is a built checkout (autoreconf -ifs && ./configure && make pjdfstest; Debian does
# not package it). TESTs are paths below its tests/ (default: all). The suite runs in a
# directory of the mount, as pjdfstest expects, over an empty lower. cowfs is the one next to
# this repository's venv (COWFS=... for another). Prints prove's
# summary and the failing files; exit status is prove's.
set -euo pipefail
pjd=$(realpath "${1:?usage: tools/pjdfstest.sh PJDFSTEST_DIR [cowfs|kernel|fuse-overlayfs] [TEST ...]}")
impl=${2:-cowfs}
shift $(( $# < 2 ? $# : 2 ))
[ -x "$pjd/pjdfstest" ] || { echo "pjdfstest.sh: no built pjdfstest in $pjd" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "pjdfstest.sh: pjdfstest needs root (it changes owners)" >&2; exit 2; }
case $impl in cowfs|kernel|fuse-overlayfs) ;; *) echo "pjdfstest.sh: unknown target $impl" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
cowfs=${COWFS:-$here/.venv/bin/cowfs}
[ "$impl" != cowfs ] || [ -x "$cowfs" ] || {
  echo "pjdfstest.sh: no cowfs at $cowfs: run make venv, or set COWFS" >&2; exit 2; }
tests=()
for t in "$@"; do tests+=("$pjd/tests/$t"); done
[ ${#tests[@]} -gt 0 ] || tests=("$pjd/tests")

if [ -z "${PJDFSTEST_INNER:-}" ]; then
  exec env PJDFSTEST_INNER=1 COWFS="$cowfs" unshare -m --propagation private "$0" "$pjd" "$impl" "$@"
fi

base=$(mktemp -d /var/tmp/cowfs-pjdfstest.XXXXXX)
trap 'cd /; fusermount3 -uz "$base/mnt" 2>/dev/null || umount -l "$base/mnt" 2>/dev/null || true; rm -rf "$base"' EXIT
mkdir "$base"/{lower,upper,work,mnt}
case $impl in
  cowfs) "$cowfs" mount --allow-other --lower "$base/lower" --upper "$base/upper" \
           --work "$base/work" "$base/mnt";;
  kernel) mount -t overlay overlay \
            -o "userxattr,lowerdir=$base/lower,upperdir=$base/upper,workdir=$base/work" "$base/mnt";;
  fuse-overlayfs) fuse-overlayfs -o "lowerdir=$base/lower,upperdir=$base/upper,workdir=$base/work" \
                    "$base/mnt";;
esac
mkdir "$base/mnt/t"
cd "$base/mnt/t"
rc=0
timeout 3000 prove -r "${tests[@]}" > "$base/prove.log" 2>&1 || rc=$?
grep -v ' ok$' "$base/prove.log" | tail -60
exit $rc
