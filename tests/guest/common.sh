# Sourced by build.sh and cloud.sh: installs missing Debian packages, finds the bookworm
# mirror this machine already uses, and prints timed steps to stderr.
need_packages() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
}
mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) .*/\1/p' | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
step() { echo "${step_name:-guest}: [$(printf '%3d' "$SECONDS") s] $*"; }
