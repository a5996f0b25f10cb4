#!/bin/sh
# SPDX-License-Identifier: MIT
# Run the example and check what it printed. usage: check.sh ./minimal
set -u
out=$("$1") || { echo "FAIL: $1 exited $?: $out"; exit 1; }
echo "$out"
case $out in
"rtioreq "*": kicks 3, reg1 0xcafe, completed 6, polled 6, unclaimed 0") exit 0 ;;
*) echo "FAIL: unexpected output"; exit 1 ;;
esac
