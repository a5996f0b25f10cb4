#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what rtioreq needs on Debian 12 (only the packages that are missing).
#   scripts/deps.sh          build and test: compiler, cmake, liburcu, libcyaml,
#                            libcpuset, cmocka, spin (tests/model)
#   scripts/deps.sh --bench  also what bench/run.sh uses: cyclictest (rt-tests),
#                            gnuplot, jq
set -eu
pkgs="build-essential cmake pkg-config liburcu-dev libcmocka-dev libcyaml-dev libyaml-dev libcpuset-dev spin"
for a in "$@"; do
	case $a in
	--bench) pkgs="$pkgs rt-tests gnuplot-nox jq" ;;
	*) echo "deps.sh: unknown argument '$a' (--bench)" >&2; exit 2 ;;
	esac
done
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "rtioreq: installing$missing" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
