#!/bin/sh
# SPDX-License-Identifier: MIT
#
# fetch-guest.sh [DIR] - fetch the guest for `rtioreq kvm` from Debian's packages:
# the cloud kernel's bzImage and an initramfs built around busybox-static.
#
#   DIR   cache directory (default: $RTIOREQ_GUEST_CACHE, else ~/.cache/rtioreq-guest)
#
# Writes into DIR:
#   vmlinuz          the bzImage (compressed, Linux boot protocol)
#   vmlinux          the same kernel uncompressed (ELF), extracted from vmlinuz with lz4
#   initramfs.gz     cpio newc + gzip: busybox, its applet links and /init
#   initramfs.cpio   the same archive uncompressed
#   busybox, VERSION
# If they all exist it downloads nothing and only prints the paths. The uncompressed
# pair matters where guest ring-0 code is emulated (/dev/kvm of kvm_pvm, docs/kvm.md):
# it skips the decompressor and the in-kernel gunzip.
# Needs apt-get (download only: nothing is installed), dpkg-deb, gzip and grep -P; the
# archive is written with `cpio` if installed, else with busybox's own cpio applet;
# the kernel is decompressed with `lz4` if installed, else with the lz4 binary taken
# from Debian's lz4 package (downloaded and extracted, not installed; it needs
# liblz4-1, which apt itself depends on). Prints on stdout:
#   kernel=DIR/vmlinuz
#   initrd=DIR/initramfs.gz
#   vmlinux=DIR/vmlinux
#   initrd_cpio=DIR/initramfs.cpio
# progress goes to stderr. Exit 0, or 1 with a one-line reason.
set -eu

die() { echo "fetch-guest: $*" >&2; exit 1; }

dir=${1:-${RTIOREQ_GUEST_CACHE:-${HOME:-/root}/.cache/rtioreq-guest}}
kernel=$dir/vmlinuz
initrd=$dir/initramfs.gz
vmlinux=$dir/vmlinux
cpio=$dir/initramfs.cpio

paths() {
	echo "kernel=$kernel"
	echo "initrd=$initrd"
	echo "vmlinux=$vmlinux"
	echo "initrd_cpio=$cpio"
}

if [ -s "$kernel" ] && [ -s "$initrd" ] && [ -s "$vmlinux" ] && [ -s "$cpio" ]; then
	paths
	exit 0
fi

for t in apt-get apt-cache dpkg-deb gzip; do
	command -v "$t" >/dev/null 2>&1 || die "'$t' not found (Debian/Ubuntu host needed)"
done
mkdir -p "$dir" || die "cannot create $dir"
work=$(mktemp -d "$dir/.work.XXXXXX")
chmod 755 "$work" # apt-get download drops privileges to _apt where it can
trap 'rm -rf "$work"' EXIT INT TERM

# linux-image-cloud-amd64 is a metapackage: download the versioned image it depends on.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1)
[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update?)"
echo "fetch-guest: downloading $pkg busybox-static" >&2
(cd "$work" && apt-get download -q "$pkg" busybox-static >&2) ||
	die "apt-get download $pkg busybox-static failed"

mkdir "$work/k" "$work/b"
dpkg-deb -x "$work/$pkg"_*.deb "$work/k" || die "cannot extract $pkg"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/b" || die "cannot extract busybox-static"
vmlinuz=$(ls "$work"/k/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $pkg"
bb=$work/b/bin/busybox
[ -x "$bb" ] || die "no /bin/busybox in busybox-static"

# The initramfs: busybox, its applet links, and /init.
root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$bb" "$root/bin/busybox"
for a in sh mount date cat uname reboot echo sleep ls dmesg; do
	ln -s busybox "$root/bin/$a"
done
cat > "$root/init" <<'INIT'
#!/bin/sh
# rtioreq guest init: mount, print the marker, a few commands, reboot.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo
echo RTIOREQ-GUEST-UP
date
cat /proc/interrupts
uname -a
echo RTIOREQ-GUEST-REBOOT
reboot -f
INIT
chmod 755 "$root/init"

if command -v cpio >/dev/null 2>&1; then
	cpio_cmd=cpio
else
	cpio_cmd="$bb cpio" # busybox-static's applet writes newc too
fi
(cd "$root" && find . | LC_ALL=C sort | $cpio_cmd -o -H newc 2>/dev/null) | gzip -9 \
	> "$work/initramfs.gz" || die "cannot build the initramfs"
[ -s "$work/initramfs.gz" ] || die "empty initramfs"

gzip -dc "$work/initramfs.gz" > "$work/initramfs.cpio" || die "cannot unpack the initramfs"

# vmlinux: the bzImage's payload is an lz4 (legacy frame) stream, magic 02 21 4c 18;
# unlz4 stops with an error at the data after it, so check the ELF magic instead
lz4=$(command -v lz4 || true)
if [ -z "$lz4" ]; then
	echo "fetch-guest: downloading lz4 (its binary only; not installed)" >&2
	(cd "$work" && apt-get download -q lz4 >&2) || die "apt-get download lz4 failed"
	mkdir "$work/l"
	dpkg-deb -x "$work"/lz4_*.deb "$work/l" || die "cannot extract lz4"
	lz4=$work/l/usr/bin/lz4
fi
off=$(LC_ALL=C grep -obUaP '\x02!L\x18' "$vmlinuz" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || die "$vmlinuz: no lz4 payload (not Debian's lz4-compressed kernel?)"
tail -c +$((off + 1)) "$vmlinuz" | "$lz4" -dc > "$work/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] ||
	die "$vmlinuz: the lz4 payload is not an ELF kernel"

cp "$bb" "$dir/busybox"
echo "$pkg $(basename "$vmlinuz")" > "$dir/VERSION"
mv "$work/initramfs.gz" "$initrd"
mv "$work/initramfs.cpio" "$cpio"
mv "$work/vmlinux" "$vmlinux"
cp "$vmlinuz" "$kernel.tmp" && mv "$kernel.tmp" "$kernel"
paths
