# Shared settings of tests/hosts/{up,down,rekey}; sourced, not run.
#
# A "set" of test hosts is one bridge, N network namespaces with one veth each
# into the bridge, one /24 in the private test range and one state directory.
# Distinct sets (SKULK_TEST_HOSTS_SET=0..250) coexist, so test binaries that
# change hosts (e.g. regenerate a host key) can own a set of their own.
#
#   set S, host I (1-based):
#     network namespace  skulkS-hI
#     address            10.213.S.I/24   (the root namespace is 10.213.S.254)
#     bridge             skbrS           (root namespace)
#     veth               skS-hI (root side, in the bridge) <-> eth0 (in the namespace)
#     state              $SKULK_TEST_HOSTS_DIR, default /tmp/skulk-test-hosts (set 0)
#                        or /tmp/skulk-test-hosts-S
#
# 10.213.0.0/16 is in 10.0.0.0/8 (RFC 1918). The namespaces get no default
# route, so test traffic can only go to these addresses or loopback.

set -euo pipefail

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

set_id=${SKULK_TEST_HOSTS_SET:-0}
[[ $set_id =~ ^[0-9]+$ ]] && ((set_id <= 250)) \
  || die "SKULK_TEST_HOSTS_SET must be an integer 0..250, got \`$set_id\`"

if ((set_id == 0)); then
  state=${SKULK_TEST_HOSTS_DIR:-/tmp/skulk-test-hosts}
else
  state=${SKULK_TEST_HOSTS_DIR:-/tmp/skulk-test-hosts-$set_id}
fi
[[ $state == /* && $state != *[[:space:]]* ]] \
  || die "SKULK_TEST_HOSTS_DIR must be an absolute path without spaces, got \`$state\`"

net=10.213.$set_id
bridge=skbr$set_id
bridge_addr=$net.254
ns_prefix=skulk$set_id-h
sshd_bin=${SKULK_TEST_SSHD:-/usr/sbin/sshd}

ns_name() { printf '%s%s' "$ns_prefix" "$1"; }
veth_name() { printf 'sk%s-h%s' "$set_id" "$1"; }
host_addr() { printf '%s.%s' "$net" "$1"; }
host_dir() { printf '%s/h%s' "$state" "$1"; }

require_root_tools() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (creates network namespaces)"
  local t
  for t in ip ssh ssh-keygen flock "$sshd_bin"; do
    command -v "$t" >/dev/null || die "\`$t\` not found

hint: run scripts/setup"
  done
}

# Serialise up/down/rekey of one set across processes. The lock file lives
# outside the state directory because `down` removes that.
take_lock() {
  exec 9>"/tmp/.skulk-test-hosts-$set_id.lock"
  flock 9
}

# Host indices whose namespace exists, ascending.
existing_hosts() {
  ip netns list 2>/dev/null | awk '{print $1}' \
    | sed -n "s/^${ns_prefix}\([0-9][0-9]*\)\$/\1/p" | sort -n
}

sshd_pid() { # I -> pid of host I's running sshd, or nothing
  local pidfile pid
  pidfile="$(host_dir "$1")/sshd.pid"
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  # Only trust the pid if it is an sshd started with this host's config.
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- "$(host_dir "$1")/sshd_config" >/dev/null; then
    printf '%s' "$pid"
  fi
}

stop_sshd() { # I
  local pid n
  pid=$(sshd_pid "$1")
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for ((n = 0; n < 50; n++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(host_dir "$1")/sshd.pid"
}

start_sshd() { # I: start host I's sshd and wait until it listens
  local dir pid n
  dir=$(host_dir "$1")
  mkdir -p /run/sshd
  rm -f "$dir/sshd.pid"
  ip netns exec "$(ns_name "$1")" "$sshd_bin" -f "$dir/sshd_config" -E "$dir/sshd.log" \
    || die "sshd for host $1 failed to start; see $dir/sshd.log"
  # sshd daemonises before it listens and writes its PidFile after listening,
  # so the pid file appearing means the port is open.
  for ((n = 0; n < 100; n++)); do
    pid=$(sshd_pid "$1")
    [[ -n $pid ]] && return 0
    sleep 0.05
  done
  die "sshd for host $1 did not come up within 5s; see $dir/sshd.log"
}

# Rewrite known_hosts from the host keys of hosts 1..N.
write_known_hosts() { # N
  local i tmp="$state/known_hosts.tmp"
  : >"$tmp"
  for ((i = 1; i <= $1; i++)); do
    printf '%s %s\n' "$(host_addr "$i")" "$(cut -d' ' -f1,2 "$(host_dir "$i")/ssh_host_ed25519_key.pub")" >>"$tmp"
  done
  mv -f "$tmp" "$state/known_hosts"
}

ssh_check() { # I: a real login from the root namespace
  ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$state/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o IdentitiesOnly=yes -i "$state/id_ed25519" -F /dev/null \
    "root@$(host_addr "$1")" true
}
