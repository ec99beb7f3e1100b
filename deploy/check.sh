#!/usr/bin/env bash
# Checks the deployment files without a cluster, a container engine or systemd running
# (none of them is available to CI): scripts/test.sh runs it.
#
#   Kubernetes  `kubectl kustomize` renders deploy/kubernetes (kustomize v5, built into
#               kubectl) and deploy/kubernetes/postgres. Where kubectl (or its kustomize
#               v5) is missing, `check_deploy.py render` does: a fallback implementing just
#               the kustomize fields used here, refusing others. Where kubectl is present,
#               the fallback's output must equal kustomize's (name hashes aside).
#               kubernetes-validate (pinned in
#               deploy/check-requirements.txt, schemas bundled) validates them and the
#               upgrade Job strictly (unknown fields are errors) against Kubernetes 1.29
#               and 1.37; deploy/check_deploy.py checks that they fit together and fit the
#               gateway's config.
#   systemd     `systemd-analyze verify` on the unit (any warning fails), `systemd-analyze
#               security --offline` (exposure must stay at or below 2.0), and
#               `systemd-sysusers` applies the user file to a scratch root.
#
# What it does not do: start a pod, build the image, run the unit under systemd
# (deploy/README.md, "What was checked, and how"). The gateway config itself is checked
# by `hpki-gateway check-config` in gateway/tests/deploy_files.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "deploy check: $*" >&2
  exit 1
}

target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- Kubernetes ------------------------------------------------------------------------
venv="$target/deploy-check-venv"
if ! "$venv/bin/python3" -c 'import kubernetes_validate' 2>/dev/null ||
  ! cmp -s deploy/check-requirements.txt "$venv/requirements.txt"; then
  echo "deploy check: installing the pinned validators into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/check-requirements.txt
  cp deploy/check-requirements.txt "$venv/requirements.txt"
fi

# kubectl is not installable from the registries CI reaches (kustomize v5 is in no Debian,
# PyPI or npm package); without it the fallback renders alone.
kustomize_version= why="kubectl not found"
if command -v kubectl >/dev/null; then
  kustomize_version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v//p')
  why="kubectl's kustomize is ${kustomize_version:+v}${kustomize_version:-of unknown version}, not v5+"
fi
if [[ "${kustomize_version%%.*}" =~ ^[0-9]+$ && "${kustomize_version%%.*}" -ge 5 ]]; then
  use_kubectl=true
  echo "deploy check: rendering with kubectl kustomize (kustomize v$kustomize_version); the fallback renderer (check_deploy.py render) must render the same"
else
  use_kubectl=false
  echo "deploy check: rendering with the fallback renderer, check_deploy.py render ($why)"
fi
render() { # DIR OUT
  if $use_kubectl; then
    kubectl kustomize "$1" >"$2"
    "$venv/bin/python3" deploy/check_deploy.py render "$1" >"$2.fallback"
    diff=$("$venv/bin/python3" deploy/check_deploy.py compare "$2" "$2.fallback") ||
      fail "the fallback renderer and kustomize differ on $1:"$'\n'"$diff"
  else
    "$venv/bin/python3" deploy/check_deploy.py render "$1" >"$2"
  fi
}
render deploy/kubernetes "$work/gateway.yaml"
render deploy/kubernetes/postgres "$work/postgres.yaml"
cp deploy/kubernetes/upgrade/store-migrate-job.yaml "$work/store-migrate-job.yaml"
for version in 1.29.0 1.37.0; do
  for f in gateway.yaml postgres.yaml store-migrate-job.yaml; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$work/$f" ||
      fail "$f does not validate against Kubernetes $version"
  done
done
echo "deploy check: kubernetes-validate $("$venv/bin/kubernetes-validate" --version) (strict, Kubernetes 1.29.0 and 1.37.0): $(grep -c '^kind:' "$work/gateway.yaml") + $(grep -c '^kind:' "$work/postgres.yaml") + 1 objects valid"
"$venv/bin/python3" deploy/check_deploy.py "$work/gateway.yaml"

# ---- systemd ---------------------------------------------------------------------------
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (package systemd)"
unit=deploy/systemd/hpki-gateway.service
# verify insists that ExecStart's program exists: the copy names one that does.
mkdir -p "$work/unit"
sed 's#/usr/local/bin/hpki-gateway#/bin/true#g' "$unit" >"$work/unit/hpki-gateway.service"
out=$(systemd-analyze verify "$work/unit/hpki-gateway.service" 2>&1) || fail "systemd-analyze verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify warns about $unit: $out"
systemd-analyze security --offline=yes --threshold=20 "$work/unit/hpki-gateway.service" >"$work/security.txt" 2>&1 ||
  fail "$unit: exposure above 2.0: $(tail -n 1 "$work/security.txt")"
grep -qx 'User=hpki-gateway' "$unit" || fail "$unit does not run as User=hpki-gateway"
for key in 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
  'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure'; do
  grep -qxF "$key" "$unit" || fail "$unit lacks $key"
done
mkdir -p "$work/root/etc"
systemd-sysusers --root="$work/root" "$PWD/deploy/systemd/hpki-gateway.sysusers" >/dev/null 2>&1 ||
  fail "systemd-sysusers refused deploy/systemd/hpki-gateway.sysusers"
grep -q '^hpki-gateway:x:[0-9]*:[0-9]*:.*:/var/lib/hpki-gateway:/usr/sbin/nologin$' "$work/root/etc/passwd" ||
  fail "deploy/systemd/hpki-gateway.sysusers does not make the system user hpki-gateway"
echo "deploy check: systemd $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'): unit verified, $(tail -n 1 "$work/security.txt" | sed 's/^→ //'), sysusers OK"
