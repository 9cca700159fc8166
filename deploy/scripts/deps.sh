#!/usr/bin/env bash
# Installs the Debian packages certportal's tests run against, when missing:
# nginx (mTLS end to end), chromium (browser test), postgresql (multi-replica
# store), and the programs users open .p12 files with, which internal/bundle's
# tests run: openssl, NSS's pk12util (libnss3-tools, with certutil and tstclnt, which
# TestBrowserDeviceKey imports into and reaches nginx with), Java's keytool
# (default-jre-headless), systemd-analyze (systemd) and Debian's Python with python3-cryptography.
# fonts-noto-cjk: Korean text in the browser tests' screenshots.
# prometheus: promtool checks and unit-tests deploy/prometheus's alert rules,
# and a real Prometheus server scrapes a running portal (internal/deploytest).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have nginx    || need+=(nginx)
have chromium || need+=(chromium)
have openssl  || need+=(openssl)
have curl     || need+=(curl)
have promtool || need+=(prometheus)
# systemd-analyze checks deploy/systemd's units.
have systemd-analyze || need+=(systemd)
have pk12util || need+=(libnss3-tools)
have tstclnt  || [[ " ${need[*]} " == *" libnss3-tools "* ]] || need+=(libnss3-tools)
have keytool  || need+=(default-jre-headless)
/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Korean glyphs for the browser tests' screenshots (the pages name this font).
fc-list 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null || need+=(fonts-noto-cjk) # no -q: with pipefail, an early exit would read as "missing"

if [ ${#need[@]} -eq 0 ]; then
	echo "deps: nginx, chromium, openssl, postgresql, pk12util, keytool, systemd-analyze, python3-cryptography, fonts-noto-cjk, prometheus present"
	exit 0
fi
echo "deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then SUDO="sudo"; else
		echo "deps: need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the install small; policy-rc.d stops Debian
# from starting the system nginx/postgresql services on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
