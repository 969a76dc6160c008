#!/usr/bin/env bash
# Installs the Debian tools the end-to-end suites use, only when missing: dig (bind9-dnsutils)
# for the DNS test over real UDP and TCP. Best effort: without apt-get as root the tool stays
# missing and its test reports itself skipped, naming the package.
set -euo pipefail

command -v dig >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "e2e: installing bind9-dnsutils (dig) with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null; } \
        || echo "e2e: apt-get could not install bind9-dnsutils; the dig test will be skipped"
else
    echo "e2e: dig is missing and apt-get (as root) is not available; the dig test will be skipped"
fi
