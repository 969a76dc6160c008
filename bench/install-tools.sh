#!/usr/bin/env bash
# Installs the load generators and the reference proxy `make bench` uses, only when missing:
# wrk (required), h2load (nghttp2-client), nginx-light (configuration 6, optional) and dnsperf
# (the agent's DNS report, bench/dns.py; optional).
# Without apt-get (or root) a missing nginx is reported and bench/run.py skips configuration 6.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
    echo "bench: installing ${missing[*]} with apt-get"
    $sudo apt-get update -qq
    # Each package on its own: one that is unavailable must not block the others.
    for pkg in "${missing[@]}"; do
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null \
            || echo "bench: apt-get could not install $pkg"
    done
else
    echo "bench: apt-get (as root) is not available; not installing ${missing[*]}"
fi

command -v nginx >/dev/null 2>&1 || echo "bench: nginx is missing: configuration 6 will be skipped"
command -v dnsperf >/dev/null 2>&1 || echo "bench: dnsperf is missing: the DNS report will be skipped"
if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: wrk is required (Debian package wrk)" >&2
    exit 1
fi
