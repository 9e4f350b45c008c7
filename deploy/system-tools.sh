#!/usr/bin/env bash
# Installs the system tools the project needs (Debian/Ubuntu packages) when they are missing.
# Usage: deploy/system-tools.sh broker|test   (broker: Java and Maven; test: also Prometheus).
# As root it runs apt-get; otherwise it stops at once with the one line to run.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ "${1:-broker}" = test ]; then
  # promtool and the prometheus server for tests/deploy (config and rule checks, a real scrape).
  { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}"
