#!/usr/bin/env bash
# Installs the Debian packages hpki-gateway and its tests need. Idempotent: packages
# already present are not touched, and apt-get runs only when something is missing.
#
#   deploy/setup.sh            the packages the current test suite uses
#   deploy/setup.sh --all      everything the full product and its peers use
#                              (SoftHSM2, pcscd, nginx, PostgreSQL, Chromium...)
#   deploy/setup.sh --runtime  only what a gateway machine needs (deploy/README.md)
#
# Needs root (or sudo) on Debian 12; prints what it installs.
set -euo pipefail

# What the tests use today: the openssl CLI builds and cross-checks the test PKI; curl is
# the client of the end-to-end tests; SoftHSM2 + opensc's pkcs11-tool + OpenSSL's pkcs11
# engine are the HPKI card of tests/e2e_card_and_streaming.rs; procps for ps/kill;
# nginx-light is the peer tests/e2e_revocation.rs compares revocation decisions with;
# postgresql (server + psql) is the throwaway database scripts/test.sh starts with
# scripts/pg-throwaway.sh, so that tests/store_suite.rs runs on PostgreSQL as well as SQLite;
# libpcsclite-dev is needed to build the card-reader agent (the pcsc crate links
# libpcsclite), pcscd + vsmartcard-vpcd (a virtual reader whose card is a test program)
# + pcsc-tools are its test peers. The browser tests (gateway/tests/browser.rs) drive
# Debian's chromium with an NSS database (libnss3-tools: certutil, pk12util, modutil);
# fonts-ipafont-gothic gives the screenshots Japanese glyphs.
CORE=(openssl ca-certificates curl softhsm2 opensc libengine-pkcs11-openssl procps nginx-light
      postgresql libpcsclite-dev pcscd vsmartcard-vpcd pcsc-tools chromium libnss3-tools
      fonts-ipafont-gothic)
# The real peers of later test suites (recipes in ../shared/recipes/README.md).
PEERS=(softhsm2 opensc opensc-pkcs11 libengine-pkcs11-openssl pcscd libpcsclite-dev
       pcsc-tools vsmartcard-vpcd libnss3-tools chromium nginx-light postgresql)

# ---- deployment (deploy/README.md) ----------------------------------------------------
# deploy/check.sh, which the test command runs: systemd-analyze and systemd-sysusers check
# the unit, python3-venv holds the pinned manifest validator. (kubectl, whose built-in
# kustomize renders the manifests, comes with some machine images only; Debian's
# kubernetes-client is too old for it. Without it check.sh uses its fallback renderer.)
CORE+=(systemd python3-venv)
# A gateway machine: no test tools. sqlite3 for online backups of the store, curl for
# health checks, openssl for keys and fingerprints, sudo for running commands as the
# service user (the ledger records $SUDO_USER), systemd for the unit and sysusers.d.
RUNTIME=(ca-certificates curl openssl sqlite3 sudo systemd)
# ---------------------------------------------------------------------------------------

want=("${CORE[@]}")
if [[ "${1:-}" == "--all" ]]; then
  want+=("${PEERS[@]}")
elif [[ "${1:-}" == "--runtime" ]]; then
  want=("${RUNTIME[@]}")
fi

missing=()
# Node.js drives Chromium through Playwright (playwright-core from npm, browser-tests/).
# The machine's own Node.js is used when there is one; Debian's otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  want+=(nodejs npm)
fi
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: missing packages (${missing[*]}) and not root: run as root or install them" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
