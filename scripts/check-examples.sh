#!/bin/sh
# SPDX-License-Identifier: MIT
# Install rtioreq from BUILD_DIR into a temporary prefix, then build every example under
# examples/*/ the way a user would, from that prefix only: a copy of the folder outside
# the source tree, its CMakeLists.txt (find_package(rtioreq)) and its Makefile
# (pkg-config); run both programs through the example's check.sh. Convention:
# examples/README.md. usage: scripts/check-examples.sh [BUILD_DIR]  (default: build)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
tmp=$(mktemp -d /tmp/rtioreq-examples.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
fail=0

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
# what the package must contain
libdir=$(ls -d "$prefix"/lib*/ | head -1)
for f in include/rtioreq.h include/rtioreq/abi.h include/rtioreq/version.h \
	include/rtioreq/core/engine.h bin/rtioreq share/man/man1/rtioreq.1; do
	[ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; fail=1; }
done
for f in librtioreq.a pkgconfig/rtioreq.pc cmake/rtioreq/rtioreqConfig.cmake \
	cmake/rtioreq/rtioreqConfigVersion.cmake; do
	[ -e "$libdir/$f" ] || { echo "FAIL: lib/$f not installed"; fail=1; }
done
soname=$(objdump -p "$libdir"/librtioreq.so | awk '/SONAME/ { print $2 }')
[ -e "$libdir/$soname" ] || { echo "FAIL: no $soname in $libdir"; fail=1; }
"$prefix/bin/rtioreq" --version || { echo "FAIL: installed rtioreq --version"; fail=1; }
echo "ok: installed to $prefix ($soname)"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
n=0
for dir in "$src"/examples/*/; do
	name=$(basename "$dir")
	n=$((n + 1))
	for f in CMakeLists.txt Makefile check.sh; do
		[ -f "$dir/$f" ] || { echo "FAIL: examples/$name has no $f"; fail=1; continue 2; }
	done
	copy="$tmp/src/$name"
	mkdir -p "$tmp/src"
	cp -R "$dir" "$copy"
	rm -rf "$copy/build" "$copy/$name"
	# CMake package
	if cmake -S "$copy" -B "$tmp/cmake-$name" -DCMAKE_PREFIX_PATH="$prefix" \
		-DCMAKE_VERBOSE_MAKEFILE=ON >"$tmp/$name-cmake.log" 2>&1 &&
		cmake --build "$tmp/cmake-$name" >>"$tmp/$name-cmake.log" 2>&1; then
		sh "$copy/check.sh" "$tmp/cmake-$name/$name" || fail=1
	else
		echo "FAIL: examples/$name: CMake build"; cat "$tmp/$name-cmake.log"; fail=1
	fi
	# plain Makefile with pkg-config
	if make -C "$copy" "$name" >"$tmp/$name-make.log" 2>&1; then
		sh "$copy/check.sh" "$copy/$name" || fail=1
	else
		echo "FAIL: examples/$name: make"; cat "$tmp/$name-make.log"; fail=1
	fi
	# nothing may come from the source or build tree
	if grep -F -e "$src/" -e "$build" "$tmp/$name-cmake.log" "$tmp/$name-make.log" \
		"$tmp/cmake-$name/CMakeCache.txt" >"$tmp/leak" 2>&1; then
		echo "FAIL: examples/$name: a path into the source or build tree:"
		head -5 "$tmp/leak"; fail=1
	fi
	[ $fail -eq 0 ] && echo "ok: examples/$name: CMake and Makefile builds run and check"
done
[ "$n" -gt 0 ] || { echo "FAIL: no examples"; fail=1; }
exit $fail
