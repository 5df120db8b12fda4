#!/usr/bin/env bash
# Runs every test of the collection, as root on Debian 12: ansible-test sanity (then a check of
# the execution environment definition with ansible-builder), ansible-test units, ansible-lint
# (production profile) on roles and playbooks and antsibull-docs on the collection's
# documentation, and ansible-test integration (real libvirt embedded drivers, real QEMU guests),
# and, at the same time, the integration suite again on Debian 13's libvirt and QEMU in a trixie
# tree (hacking/debian13.sh). Between units and lint, matrix: sanity (but pylint) and units again
# with each older ansible-core release that meta/runtime.yml's requires_ansible claims.
# Usage: hacking/test.sh [sanity|units|lint|integration|debian13|matrix ...] [-- extra ansible-test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
hacking/bootstrap.sh openssh-client openssh-server || exit 1
checkout=$PWD
export PATH="$checkout/.cache/venv/bin:$PATH"

suites=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do suites+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#suites[@]} -gt 0 ] || suites=(sanity units matrix lint integration debian13)

# ansible-test works on an ansible_collections/<namespace>/<name> tree: copy what git has
# (tracked files and new ones it does not ignore) into one, afresh each run. It lives outside
# the checkout: inside, ansible-test would list files with the checkout's git and skip them all.
work=${TMPDIR:-/tmp}/embedvirt-ansible-test
tree=$work/ansible_collections/embedvirt/libvirt
rm -rf "$work"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar -c --null -T - -f - | tar -x -C "$tree" -f -
cd "$tree"

python=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
stack=$(/usr/bin/python3 -c 'import libvirt; v = libvirt.getVersion(); print("libvirt %d.%d.%d" % (v // 1000000, v // 1000 % 1000, v % 1000))' 2>&1; \
  qemu-system-x86_64 --version | head -1; echo "Python $python on $(. /etc/os-release; echo "$PRETTY_NAME")")
passed=0 failed=0 names_failed=()
mkdir -p "$work/logs"
# tally NAME RC: a suite's outcome, counted.
tally() {
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); names_failed+=("$1"); fi
}
run() {
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$work/logs/$name.log"
  tally "$name" "${PIPESTATUS[0]}"
}
# failures NAME: what failed in that suite, in a few lines at the end of the output, where CI
# shows it. For each target ansible-test lists as failed (also inside the Debian 13 tree): the
# task its failed play stopped at (a failure that was ignored or rescued, or in a nested play a
# target expects to fail, is not one), or the last lines before its script stopped; then
# ansible-test's list. For the other suites, or when none of this is found, the end of the output.
failures() {
  local log=$work/logs/$1.log found=
  [ -f "$log" ] || return 0
  case $1 in integration|debian13) found=$(awk -v suite="$1" '
    FNR == NR {
      if (/^FATAL: /) { listed = 1; inlist = 1 }
      else if (inlist && /^[A-Za-z0-9_.-]+$/) failed[$1] = 1
      else { inlist = 0; next }
      list = list "  " substr($0, 1, 400) "\n"
      next
    }
    /^Running [^ ]+ integration test (role|script)/ { target = $2 }
    /^TASK \[/ { task = $0; sub(/ \*+$/, "", task) }
    /^(fatal|failed): \[/ { last = "failure in " suite ": " target ": " task " " substr($0, 1, 400) }
    /^\.\.\.ignoring/ { last = "" }
    /^PLAY RECAP/ { recap = 1 }
    recap && / failed=[1-9]/ && last != "" && (target in failed || !listed) { print last; last = "" }
    recap && !NF { recap = 0; last = "" }
    /^ERROR: Command "\.\/runme\.sh/ && (target in failed || !listed) {
      print "failure in " suite ": " target ": its script stopped after"
      for (i = NR - 6; i < NR; i++) if (i in recent) print "  " substr(recent[i], 1, 300)
    }
    { recent[NR] = $0; delete recent[NR - 6] }
    END { printf "%s", list }' "$log" "$log" | head -n 40) ;;
  esac
  if [ -n "$found" ]; then echo "$found"; else echo "failure in $1, its last lines:"; tail -n 15 "$log"; fi
}
# ee_check: the execution environment. ansible-builder writes the build context of tests/ee's
# definition (no image: no container registry is reachable), with the collection's tarball built
# from the tree; then, as the image build's introspection would, it reads the requirements the
# installed collection declares (meta/execution-environment.yml, bindep.txt, requirements.txt).
ee_check() {
  local ee=$work/ee
  rm -rf "$ee" && mkdir -p "$ee" && cp -r tests/ee/. "$ee/" \
    && ansible-galaxy collection build --output-path "$ee" . \
    && mv "$ee"/embedvirt-libvirt-*.tar.gz "$ee/embedvirt-libvirt.tar.gz" \
    && ansible-builder create -f "$ee/execution-environment.yml" -c "$ee/context" --output-filename Containerfile \
    && ANSIBLE_COLLECTIONS_PATH=$ee/installed ansible-galaxy collection install -p "$ee/installed" "$ee/context/_build/collections/embedvirt-libvirt.tar.gz" \
    && ansible-builder introspect --sanitize --write-bindep "$ee/bindep.txt" --write-pip "$ee/requirements.txt" \
         "$ee/installed" || return 1
  grep -q '^python3-libvirt ' "$ee/bindep.txt" \
    || { echo "ee: the installed collection's system requirements lack python3-libvirt"; return 1; }
  echo "ee: build context in $ee/context; the collection's requirements: $(cut -d' ' -f1 "$ee/bindep.txt" | sort -u | paste -sd' ')"
}
# The sanity suite: ansible-test sanity, then the execution environment check; either failing fails it.
sanity_suite() {
  local rc=0
  ansible-test sanity --venv --python "$python" --color no "$@" || rc=1
  echo "=== sanity: execution environment (ansible-builder create, tests/ee)"
  ee_check || rc=1
  return $rc
}
# matrix_core VENV: ansible-test sanity and units with the ansible-core of that venv. Not
# pylint: its verdicts follow pylint's release, not ansible-core's, and the newest core runs it.
matrix_core() {
  local venv=$1 rc=0; shift
  PATH="$venv/bin:$PATH" ansible-test sanity --venv --python "$python" --color no --skip-test pylint "$@" || rc=1
  PATH="$venv/bin:$PATH" ansible-test units --venv --python "$python" --color no "$@" || rc=1
  return $rc
}
# The Debian 13 suite. Without arguments, every target whose outcome can depend on libvirt's or
# QEMU's version. Left out: clone, the slowest (five guests booting from one template), while
# what it relies on that libvirt or QEMU could change (overlays, backing chains, the instance
# module) the volume, snapshot and instance targets cover; demo, the instance module again; and
# what is this collection's own logic before libvirt: concurrency (the root's lock) and newcomer
# (a venv, the helper's Python).
debian13_suite() {
  local args=("$@")
  [ $# -gt 0 ] || args=(--exclude clone --exclude demo --exclude concurrency --exclude newcomer)
  echo "=== debian13: $checkout/hacking/debian13.sh ${args[*]}"
  "$checkout/hacking/debian13.sh" "${args[@]}"
}
debian13_pid= debian13_ran=false
for suite in "${suites[@]}"; do
  case $suite in
    sanity) run sanity sanity_suite "$@" ;;
    units) run units ansible-test units --venv --python "$python" --color no "$@" ;;
    lint)
      ANSIBLE_COLLECTIONS_PATH=$work run lint ansible-lint --profile production --offline --nocolor roles playbooks
      # The collection's documentation as antsibull-docs builds it: plugin and role docs, and the
      # guides in docs/docsite (extra-docs.yml, links.yml, the rst files).
      ANSIBLE_COLLECTIONS_PATH=$work run lint-docs antsibull-docs lint-collection-docs --plugin-docs . ;;
    integration)
      # The real Debian guests, built once, cached in the checkout: the guest_agent target's,
      # and the cloud image (a qcow2 with its sha256) that the instance target boots.
      if ! guest=$("$checkout/tests/guest/build.sh" "$checkout/.cache/guest") || [ ! -d "$guest" ]; then
        failed=$((failed + 1)); names_failed+=("integration (test guest build)"); continue
      fi
      if ! cloud=$("$checkout/tests/guest/build.sh" cloud "$checkout/.cache/guest") \
         || [ ! -s "$cloud/cloud.qcow2.sha256" ]; then
        failed=$((failed + 1)); names_failed+=("integration (cloud image build)"); continue
      fi
      printf 'embedvirt_guest_image: %s\nembedvirt_cloud_image: %s\nembedvirt_cloud_image_sha256: %s\nembedvirt_rulebook: %s\n' \
        "$guest" "$cloud/cloud.qcow2" "$(cat "$cloud/cloud.qcow2.sha256")" "$checkout/.cache/rulebook/bin/ansible-rulebook" \
        >tests/integration/integration_config.yml
      # The Debian 13 suite, when asked for too, runs meanwhile: its guests wait for I/O and
      # timers much of the time, and both suites fit on two cores in less time than one after the other.
      if [[ " ${suites[*]} " == *" debian13 "* ]] && ! $debian13_ran; then
        debian13_suite "$@" >"$work/logs/debian13.log" 2>&1 &
        debian13_pid=$!
        echo "=== debian13: started beside integration; its output follows when it ends"
      fi
      echo "=== integration runs on: $(echo "$stack" | paste -sd ';' | sed 's/;/; /g')"
      # In PID and mount namespaces of its own (the Debian 13 suite has its own as well): the
      # targets' pkill and pgrep, which find guests and helpers by their command lines, see
      # only this suite's processes, and what a target mounts goes with the namespaces. bash is
      # its process 1: it reaps the QEMUs and helpers that daemonize (libvirt never sees a
      # zombie QEMU die, and fails to destroy its guest).
      run integration unshare --pid --fork --kill-child --mount-proc --propagation private \
        bash -c '"$@" & wait $!' reaper \
        ansible-test integration --local --python "$python" --allow-destructive --continue-on-error \
        --color no -v "$@" ;;
    debian13)
      debian13_ran=true
      if [ -n "$debian13_pid" ]; then
        echo "=== debian13: waiting for the suite started beside integration"
        wait "$debian13_pid"
        rc=$?
        cat "$work/logs/debian13.log"
        tally debian13 $rc
      else
        run debian13 debian13_suite "$@"
      fi ;;
    matrix)
      # The sanity and units suites again with each older ansible-core release that
      # meta/runtime.yml claims (requires_ansible), each from a venv of its own that
      # hacking/bootstrap.sh --core builds once and caches in .cache/core-<version>.
      oldest=$(sed -n "s/^requires_ansible: '>=2\.\([0-9]*\)\..*/\1/p" meta/runtime.yml)
      newest=$(python -c 'from ansible.release import __version__ as v; print(v.split(".")[1])')
      for ((minor = ${oldest:-$newest}; minor < newest; minor++)); do
        if ! venv=$("$checkout/hacking/bootstrap.sh" --core "2.$minor"); then
          failed=$((failed + 1)); names_failed+=("matrix-2.$minor (venv)"); continue
        fi
        run "matrix-2.$minor" matrix_core "$venv" "$@"
      done ;;
    *) echo "unknown suite '$suite': use sanity, units, lint, integration, debian13 or matrix"; exit 2 ;;
  esac
done
for name in "${names_failed[@]}"; do failures "$name"; done
[ $failed -eq 0 ] || echo "failed suites: ${names_failed[*]}"
echo "embedvirt test suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
