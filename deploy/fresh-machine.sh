#!/usr/bin/env bash
# Runs a command as on a fresh machine of the project's kind, without touching this one.
# Usage (root, Linux): deploy/fresh-machine.sh COMMAND [ARG...]   e.g. deploy/fresh-machine.sh make test
#
# In a private mount namespace, /usr, /etc, /var and the home directory become overlays whose
# changes live in a throwaway folder; there Java, Maven and Prometheus are purged with apt-get (so
# java, mvn, promtool and prometheus are gone from every PATH, and dpkg knows it), apt's download
# cache is emptied, uv is uninstalled, and the caches of uv, Maven (~/.m2) and moodshift (Kafka jars,
# broker data, models) are removed. Then COMMAND runs there. When it ends the namespace and its
# overlays are gone; the machine is as it was. .ci/run uses it to show that the README's two commands
# set up everything themselves (issue 15).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

if [ -z "${MOODSHIFT_FRESH_SCRATCH:-}" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "fresh-machine.sh needs root (mount namespaces, apt-get)" >&2; exit 2; }
  command -v unshare >/dev/null 2>&1 || { echo "fresh-machine.sh needs unshare (util-linux)" >&2; exit 2; }
  # The overlays' changes (gigabytes: the packages and wheels downloaded again) go here, and go
  # when the command is done, whatever its end.
  scratch=$(mktemp -d /tmp/moodshift-fresh.XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  MOODSHIFT_FRESH_SCRATCH=$scratch unshare --mount --propagation private "$0" "$@"
  exit
fi

workdir=$(pwd)
scratch=$MOODSHIFT_FRESH_SCRATCH
for dir in /usr /etc /var "$HOME"; do
  name=$(echo "$dir" | tr / _)
  mkdir -p "$scratch/$name-upper" "$scratch/$name-work"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$scratch/$name-upper,workdir=$scratch/$name-work" "$dir"
done
cd "$workdir"  # the overlays, not the directories under them

export DEBIAN_FRONTEND=noninteractive
apt-get purge -y -qq openjdk-17-jre-headless maven prometheus > "$scratch/purge.log" 2>&1 \
  || { cat "$scratch/purge.log" >&2; exit 1; }
apt-get clean
python3 -m pip uninstall -y -q uv > /dev/null 2>&1 || true
rm -rf "$HOME/.m2" "$HOME/.cache/uv" "$HOME/.cache/moodshift" "$HOME/.local/state/moodshift"
hash -r
for tool in java mvn promtool prometheus uv; do
  if command -v "$tool" > /dev/null 2>&1; then
    echo "fresh-machine.sh: $tool is still on the PATH ($(command -v "$tool"))" >&2
    exit 1
  fi
done
echo "fresh-machine.sh: java, mvn, promtool, prometheus and uv are gone; running: $*" >&2
"$@"
