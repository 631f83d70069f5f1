#!/bin/bash
# What kernel overlay (rootless and as root) and fuse-overlayfs do with the issue-16 features:
# a lower hard link written through one name, chmod of a 1 MiB lower file (data copied?), mv of
# a lower dir of 100 files (copied?), a copied-up symlink's st_ino across a remount. The rows of
# README's issue-16 table marked "probe". As root, in a private mount namespace:
#   unshare -m --propagation private tools/feature_probe.sh kroot|kuser|fuseovl [USER]
set -eu
impl=$1
user=${2:-cowfs-test}
B=/var/tmp/cowfs-probe-$impl
rm -rf "$B"
mkdir -p "$B"/{l,u,w,m} "$B"/l/d "$B"/l/sub
cd "$B"
echo hello > l/a
ln l/a l/sub/b
for i in $(seq 100); do echo "$i" > "l/d/f$i"; done
ln -s a l/s
head -c 1048576 /dev/urandom > l/big
chown -R "$user:" "$B"
U=(setpriv --reuid="$user" --regid="$user" --init-groups)
mnt() {
  case $impl in
  kroot) mount -t overlay o -o lowerdir=l,upperdir=u,workdir=w,redirect_dir=on,index=on,metacopy=on m ;;
  kuser) mount -t overlay o -o userxattr,lowerdir=l,upperdir=u,workdir=w m ;;
  fuseovl) "${U[@]}" fuse-overlayfs -o "lowerdir=$B/l,upperdir=$B/u,workdir=$B/w" "$B/m" ;;
  *) echo "usage: $0 kroot|kuser|fuseovl [USER]" >&2; exit 2 ;;
  esac
}
umnt() { if [ "$impl" = fuseovl ]; then "${U[@]}" fusermount3 -u m; else umount m; fi; }
ino() { "${U[@]}" stat -c %i:%h "$@" | tr '\n' ' '; }
mnt
echo "lower hard link a, sub/b (ino:nlink): $(ino m/a m/sub/b)"
"${U[@]}" sh -c 'echo more >> m/a'
echo "after a write through a: $(ino m/a m/sub/b) b=$("${U[@]}" cat m/sub/b | tr '\n' ' ')"
s1=$("${U[@]}" stat -c %i m/s)
"${U[@]}" touch -h m/s
"${U[@]}" chmod 600 m/big
echo "chmod of the 1 MiB lower file: upper st_blocks $(stat -c %b u/big)"
"${U[@]}" mv -T m/d m/e
echo "mv of the lower dir d (100 files) to e: upper holds $(ls u | tr '\n' ' '); files in upper e: $(find u/e -type f | wc -l)"
umnt
sleep 0.3
if [ "$impl" != kroot ]; then rm -rf w; mkdir w; chown "$user:" w; fi  # kroot: keep its index
mnt
echo "after a remount: copied-up symlink st_ino $s1 -> $("${U[@]}" stat -c %i m/s); a, sub/b: $(ino m/a m/sub/b)"
umnt
