#!/usr/bin/env bash
# Worked example: Nginx admitting portal certificates, end to end on loopback.
#
#   1. start the dev Vault and run `certportal setup --demo-users`
#   2. make a token that holds only the certportal-nginx policy
#   3. `certportal nginx-certs` writes Nginx's files from Vault
#   4. `certportal nginx-config` renders the server block
#   5. start Debian's nginx on 127.0.0.1:8443
#   6. show what it admits, with a certificate issued with alice's own token
#   7. revoke it, let nginx-certs refresh the CRL and reload nginx, and show
#      the refusal
#
# Run from anywhere after `make build`; needs nginx, curl and openssl.
# Everything lives in a temporary directory and is removed at the end;
# `--keep` leaves Vault and nginx running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."

CERTPORTAL="${CERTPORTAL:-bin/certportal}"
DEVVAULT="${DEVVAULT:-bin/devvault}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
LISTEN="${NGINX_LISTEN:-127.0.0.1:8443}"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

for f in "$CERTPORTAL" "$DEVVAULT"; do
	[ -x "$f" ] || { echo "run-example: $f missing: run \`make build\`" >&2; exit 1; }
done
[ -x "$NGINX" ] || { echo "run-example: nginx missing: run \`make deps\`" >&2; exit 1; }

work="$(mktemp -d -t certportal-nginx.XXXXXX)"
certs="$work/certs"   # what nginx-certs writes (/etc/nginx/certportal in production)
ngx="$work/nginx"     # nginx's prefix: configuration, pid, logs, temp files
mkdir -p "$certs" "$ngx"
pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n==> %s\n' "$*"; }
show() { printf '    $ %s\n' "$*"; }
# json_str FIELD: the first string FIELD of the JSON on stdin, \n decoded.
# Enough for Vault's answers here (tokens and PEM hold no quotes).
json_str() { grep -o "\"$1\":\"[^\"]*\"" | head -n1 | cut -d'"' -f4 | sed 's/\\n/\n/g'; }
vault_api() { # METHOD PATH TOKEN [JSON]
	local args=(-fsS -X "$1")
	[ -n "$3" ] && args+=(-H "X-Vault-Token: $3")
	[ -n "${4:-}" ] && args+=(-d "$4")
	curl "${args[@]}" "$VAULT_ADDR/v1/$2"
}
# status PATH [curl args]: the HTTP status nginx answers PATH with.
status() {
	local path=$1; shift
	curl -s -o /dev/null -w '%{http_code}' --cacert "$certs/client-ca.pem" "$@" "https://$LISTEN$path"
}
# Every path nginx uses comes from $ngx, not from its build defaults.
nginx_args=(-p "$ngx/" -e stderr -c "$ngx/nginx.conf")

step "1. Dev Vault (in memory) and certportal setup"
"$DEVVAULT" -listen 127.0.0.1:0 -env-file "$work/vault.env" >"$work/devvault.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/vault.env" ] && break; sleep 0.1; done
[ -s "$work/vault.env" ] || { echo "devvault did not start" >&2; cat "$work/devvault.log" >&2; exit 1; }
set -a; . "$work/vault.env"; set +a
ROOT_TOKEN="$VAULT_TOKEN"
"$CERTPORTAL" setup --demo-users --server-ip-sans 127.0.0.1 | tee "$work/setup.out"
alice_pw="$(awk '$1 == "alice" { print $2 }' "$work/setup.out")"

step "2. A token for nginx-certs, holding only the certportal-nginx policy"
NGINX_TOKEN="$(vault_api POST auth/token/create "$ROOT_TOKEN" '{"policies":["certportal-nginx"],"ttl":"24h"}' | json_str client_token)"
unset VAULT_TOKEN   # from here on nothing acts with the root token by accident
echo "    created (in production: a Vault agent, AppRole or a token from your secrets store)"

step "3. nginx-certs writes the server certificate, the client CA chain and the CRLs"
show "certportal nginx-certs --out-dir $certs --server-name localhost --ip-sans 127.0.0.1"
VAULT_TOKEN="$NGINX_TOKEN" "$CERTPORTAL" nginx-certs --out-dir "$certs" --server-name localhost --ip-sans 127.0.0.1
ls -l "$certs"

step "4. nginx-config renders the server block"
"$CERTPORTAL" nginx-config --server-name localhost --listen "$LISTEN" \
	--server-cert "$certs/server.pem" --server-key "$certs/server-key.pem" \
	--client-ca "$certs/client-ca.pem" --crl "$certs/crl.pem" >"$ngx/server.conf"
echo "    wrote $ngx/server.conf (deploy/nginx/certportal.conf is the same for /etc/nginx/certportal)"

step "5. nginx on https://$LISTEN"
# A minimal main configuration that keeps every file nginx writes in $ngx.
cat >"$ngx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log info;
events { worker_connections 64; }
http {
    access_log $ngx/access.log;
    client_body_temp_path $ngx/client_body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;
    include $ngx/server.conf;
}
CONF
"$NGINX" "${nginx_args[@]}" -t
# Started directly (not through a function, which would fork a subshell), so
# that $! is the master and the cleanup stops nginx with it.
"$NGINX" "${nginx_args[@]}" &
pids+=($!)
for _ in $(seq 1 100); do [ "$(status /)" = 200 ] && break; sleep 0.1; done

step "6. What nginx admits"
# alice logs in with her own password and issues with her own token, exactly
# as the portal does; in a browser she would import the portal's .p12.
alice_token="$(vault_api POST auth/userpass/login/alice "" "{\"password\":\"$alice_pw\"}" | json_str client_token)"
issued="$(vault_api POST pki/issue/user-auth "$alice_token" '{"common_name":"alice@example.com","ttl":"86400s"}')"
printf '%s' "$issued" | json_str certificate >"$work/alice.pem"
printf '%s' "$issued" | json_str private_key >"$work/alice-key.pem"
alice_serial="$(printf '%s' "$issued" | json_str serial_number)"
# An attacker's own CA, issuing a certificate with alice's name.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=alice@example.com" \
	-keyout "$work/mallory-key.pem" -out "$work/mallory.pem" 2>/dev/null
alice=(--cert "$work/alice.pem" --key "$work/alice-key.pem")
printf '    %-46s %s\n' \
	"/ without a certificate" "$(status /)" \
	"/secure without a certificate" "$(status /secure)" \
	"/secure with alice's certificate" "$(status /secure "${alice[@]}")" \
	"/secure with a certificate from another CA" "$(status /secure --cert "$work/mallory.pem" --key "$work/mallory-key.pem")"
echo "    /secure/whoami with alice's certificate:"
curl -s --cacert "$certs/client-ca.pem" "${alice[@]}" "https://$LISTEN/secure/whoami" | sed 's/^/      /'

step "7. Revocation reaches nginx through nginx-certs"
vault_api POST pki/revoke "$ROOT_TOKEN" "{\"serial_number\":\"$alice_serial\"}" >/dev/null
echo "    revoked $alice_serial in Vault"
printf '    %-46s %s\n' "/secure with alice's certificate, old CRL" "$(status /secure "${alice[@]}")"
reload="$NGINX ${nginx_args[*]} -s reload"
show "certportal nginx-certs --out-dir $certs --server-name localhost --ip-sans 127.0.0.1 --reload-cmd '$reload'"
VAULT_TOKEN="$NGINX_TOKEN" "$CERTPORTAL" nginx-certs --out-dir "$certs" --server-name localhost --ip-sans 127.0.0.1 --reload-cmd "$reload"
for _ in $(seq 1 50); do [ "$(status /secure "${alice[@]}")" = 400 ] && break; sleep 0.1; done
printf '    %-46s %s\n' "/secure with alice's certificate, new CRL" "$(status /secure "${alice[@]}")"
echo "    (in production: certportal nginx-certs --watch --reload-cmd 'nginx -s reload' keeps doing this)"

if [ "$keep" = 1 ]; then
	printf '\nnginx: https://%s/  Vault: %s  files: %s\nCtrl-C stops everything.\n' "$LISTEN" "$VAULT_ADDR" "$work"
	wait
fi
