#!/usr/bin/env bash
# Make the machine-level prerequisites of ma2ml present, idempotently:
#   * Debian packages: the Fashion-MNIST data set (the offline default), and
#     for the test suite Chromium and chromedriver (report rendering, dashboard
#     browser tests) and Prometheus (promtool, scrape test). Installed only when
#     missing and we are root.
#   * PostgreSQL on 127.0.0.1:5432: started when installed but down.
# Usage: scripts/ensure-system.sh [--tests]
set -euo pipefail

want=(dataset-fashion-mnist)
if [[ "${1:-}" == "--tests" ]]; then
  want+=(chromium chromium-driver prometheus)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-system: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ensure-system: missing Debian packages ${missing[*]} (install them as root)" >&2
  fi
fi

if [[ "${1:-}" == "--tests" ]] && command -v pg_isready >/dev/null; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
      echo "ensure-system: starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 || { echo "ensure-system: PostgreSQL is not reachable" >&2; exit 1; }
fi
