#!/usr/bin/env bash
# Installs what the tests and the demo need and a fresh Debian 12 machine
# lacks: PostgreSQL 15 binaries, make, gzip, a C compiler, curl, git (the
# audit trail writes with `git fast-import`), the DejaVu font (text of the
# simulation's chart), unzip, openssl, npm and python3-venv (the Helm
# chart's test); with PUPPET=1 also Debian's puppetserver,
# puppet-agent and facter (the end-to-end suite, `PUPPET=1 make demo`);
# with BROWSER=1 Debian's chromium (the status page's browser test).
# Installs nothing when all is present; needs root only when it must install.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# The dashboards' check reads YAML (PyPI, into whichever python3 is first
# on PATH; Debian's python3-yaml would not reach a pyenv python).
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "install-deps: installing PyYAML from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check pyyaml
fi

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v make >/dev/null || missing+=(make)
command -v gzip >/dev/null || missing+=(gzip)
command -v cc >/dev/null || missing+=(build-essential)
command -v curl >/dev/null || missing+=(curl)
command -v git >/dev/null || missing+=(git)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# The chart's test (helm/test.sh): helm comes from the npm registry, the
# Kubernetes schemas from PyPI, a throwaway CA from openssl.
command -v unzip >/dev/null || missing+=(unzip)
command -v openssl >/dev/null || missing+=(openssl)
command -v npm >/dev/null || missing+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# BROWSER=1: Debian's chromium, for the status page's browser test.
if [ "${BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ "${PUPPET:-0}" = 1 ]; then
  # The packages' postinst cannot start the service here (no systemd,
  # policy-rc.d below): the tests start puppetserver themselves.
  for pkg in puppetserver puppet-agent facter; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: nothing to install (postgresql-15, make, gzip, cc, curl, git, fonts-dejavu-core, unzip, openssl, npm, python3-venv$([ "${PUPPET:-0}" = 1 ] && echo ", puppetserver, puppet-agent, facter")$([ "${BROWSER:-0}" = 1 ] && echo ", chromium") present)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing: ${missing[*]}"
# The package would create and start a `main` cluster on port 5432; the
# project starts its own servers, so create no cluster and start no service.
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/pvc.conf
added_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  added_policy=1
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
