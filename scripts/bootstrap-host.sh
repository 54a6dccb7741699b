#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, only those missing.
set -euo pipefail
pkgs=(docker.io mmdebstrap rsync openssl)
[ "${1:-}" = "--identity" ] && pkgs+=(krb5-kdc krb5-admin-server krb5-user 389-ds-base ldap-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# Parallel test workers may all ask at once: one installs, the others wait and find nothing missing.
if [ -z "${DP_HOST_LOCKED:-}" ]; then
  DP_HOST_LOCKED=1 exec flock /tmp/dataplatform-bootstrap-host.lock "$0" "$@"
fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
