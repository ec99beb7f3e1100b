#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora from the real HPKI certificates in the shared test data
# ($HPKI_SHARED_DIR, the directory holding hpki/; default <repo>/../shared).
#   corpus/parse_and_verify/  every ca/*.der and test-certs/*.der, plus one PEM bundle
#                             (MEDIS doctor + MEDIS sign CA + MHLW root)
#   corpus/hc_roles/          the real "Medical Doctor" hcRole extension value
# Idempotent: files are named after their source, so re-running overwrites them.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shared="${HPKI_SHARED_DIR:-$fuzz_dir/../../shared}"
hpki="$shared/hpki"
if [[ ! -d "$hpki/ca" || ! -d "$hpki/test-certs" ]]; then
    echo "seed.sh: $hpki/ca and $hpki/test-certs not found (set HPKI_SHARED_DIR to the directory holding hpki/)" >&2
    exit 1
fi

pv="$fuzz_dir/corpus/parse_and_verify"
roles="$fuzz_dir/corpus/hc_roles"
mkdir -p "$pv" "$roles"

n=0
for f in "$hpki"/ca/*.der "$hpki"/test-certs/*.der; do
    install -m 0644 "$f" "$pv/seed-$(basename "$f")"
    n=$((n + 1))
done

pem() {
    echo "-----BEGIN CERTIFICATE-----"
    base64 -w 64 < "$1"
    echo "-----END CERTIFICATE-----"
}
{
    pem "$hpki/test-certs/medis-doctor-sanjushi.der"
    pem "$hpki/ca/medis-sign-ca2.der"
    pem "$hpki/ca/mhlw-hpki-root-ca-v2.der"
} > "$pv/seed-medis-doctor-bundle.pem"
n=$((n + 1))

# subjectDirectoryAttributes value of a real "Medical Doctor" certificate
# (shared/hpki/README.md).
hex=303430320606288185420001312831263024A0223120A00C060A2A830886910F01060101A2100C0E4D65646963616C20446F63746F72
printf '%b' "$(sed 's/../\\x&/g' <<< "$hex")" > "$roles/seed-medical-doctor.bin"

echo "seed.sh: $n inputs in $pv, 1 in $roles"
