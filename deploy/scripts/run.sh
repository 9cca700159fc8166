#!/usr/bin/env bash
# `make run`: the embedded dev Vault, `certportal setup --demo-users` and
# `certportal serve`, wired together on loopback. Everything lives in memory
# or in a temporary directory and is gone after Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."

VAULT_LISTEN="${DEVVAULT_LISTEN:-127.0.0.1:8200}"
export CERTPORTAL_LISTEN="${CERTPORTAL_LISTEN:-127.0.0.1:8080}"
# Links the helpdesk hands out (MFA enrolment) lead here.
export CERTPORTAL_PUBLIC_URL="${CERTPORTAL_PUBLIC_URL:-http://$CERTPORTAL_LISTEN}"
work="$(mktemp -d -t certportal-run.XXXXXX)"
pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
	echo "certportal: stopped"
}
trap cleanup EXIT INT TERM

bin/devvault -listen "$VAULT_LISTEN" -env-file "$work/vault.env" &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/vault.env" ] && break; sleep 0.1; done
[ -s "$work/vault.env" ] || { echo "devvault did not start" >&2; exit 1; }

set -a; . "$work/vault.env"; set +a
# The trail is the portal's database: setup records itself there first.
export CERTPORTAL_DB="$work/certportal.db"
bin/certportal setup --demo-users --approle-out "$work"
# The portal never acts with the root token: users' own tokens, and its
# AppRole identity for revocation.
unset VAULT_TOKEN VAULT_UNSEAL_KEY
export CERTPORTAL_APPROLE_ROLE_ID="$(cat "$work/role-id")"
export CERTPORTAL_APPROLE_SECRET_ID_FILE="$work/secret-id"

bin/certportal serve &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "http://$CERTPORTAL_LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
cat <<MSG

  certportal is running: http://$CERTPORTAL_LISTEN/
  Vault (dev, in memory): $VAULT_ADDR
  Log in with one of the demo logins printed above. Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
