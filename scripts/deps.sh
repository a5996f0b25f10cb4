#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what rtioreq needs on Debian 12 (only the packages that are missing).
set -eu
pkgs="build-essential cmake pkg-config liburcu-dev libcmocka-dev libcyaml-dev libyaml-dev libcpuset-dev"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "rtioreq: installing$missing" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
