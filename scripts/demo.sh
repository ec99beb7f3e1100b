#!/usr/bin/env bash
# What the certificate core does today, end to end: generate an HPKI-shaped test PKI,
# then inspect and verify every card against the authentication and organization
# profiles with the real `hpki-gateway` binary. Needs only the Rust toolchain.
#   scripts/demo.sh [DIR]     (default: target/demo-pki)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-target/demo-pki}"

echo "== building"
cargo build -q -p hpki-gateway -p pki-tests
GW=target/debug/hpki-gateway

echo "== generating a test PKI in $DIR"
rm -rf "$DIR"
target/debug/hpki-testpki generate --out "$DIR" | sed 's/^/   /'

echo
echo "== cert inspect $DIR/certs/doctor.pem"
$GW cert inspect "$DIR/certs/doctor.pem"

printf '\n== cert verify --login, per profile (what the gateway would decide at login)\n'
printf '   %-18s %-34s %-34s\n' card hpki-auth hpki-org
for cert in "$DIR"/certs/*.pem; do
  name=$(basename "$cert" .pem)
  key="$DIR/certs/$name.key"
  [[ -f "$key" ]] || continue
  # Leaves only: skip CA certificates.
  info=$($GW cert inspect "$cert")
  [[ "$info" == *'"is_ca": false'* ]] || continue
  chain=()
  for ca in auth-ca sign-ca org-ca auth-ca-g2 root-g2-cross; do chain+=(--intermediate "$DIR/certs/$ca.pem"); done
  decide() { # profile-dir policy-prefix -> reason code or "valid"
    local out
    out=$($GW cert verify --login --json --trust "$1" --policy "$2" "${chain[@]}" "$cert" || true)
    sed -n 's/^  "reason": "\{0,1\}\([a-z_]*\)"\{0,1\},\{0,1\}$/\1/p' <<<"$out"
  }
  auth=$(decide "$DIR/trust/hpki-auth" 1.2.392.100495.1.5.1.2)
  org=$(decide "$DIR/trust/hpki-org" 1.2.392.100495.1.5.1.3)
  [[ "$auth" == null ]] && auth="valid"
  [[ "$org" == null ]] && org="valid"
  :
  printf '   %-18s %-34s %-34s\n' "$name" "$auth" "$org"
done

cat <<EOT

Try it yourself:
  $GW cert verify --login --trust $DIR/trust/hpki-auth --policy 1.2.392.100495.1.5.1.2 \\
      --intermediate $DIR/certs/auth-ca.pem $DIR/certs/doctor.pem
  $GW cert verify --login --trust $DIR/trust/hpki-auth $DIR/certs/signing-card.pem
  $GW cert verify --trust certs/hpki/hpki-sign --at 2026-01-01T00:00:00Z ../shared/hpki/test-certs/medis-doctor-sanjushi.der
EOT
