#!/usr/bin/env bash
# End-to-end checks of a node's trust boundaries with real containers:
# host bind mounts only under --allow-host-path (never /, /proc, /sys, /dev
# or the data dir, symlinks resolved first), the container seccomp profile
# (no namespace-creating clone, clone3 -> ENOSYS, no io_uring), the default
# pids limit, the data dir's modes, a replica's log rotation, and a flood of idle connections on a
# published port and on the unix API. Each refusal is checked word for
# word, and nothing outside the store changes. Uses its own data dir and
# the node's default bridge: no other zlayer node may run meanwhile.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
export ZLAYER_DATA_DIR=$(mktemp -d /tmp/zlayer-e2e-trust.XXXX)
T=$(mktemp -d /tmp/zlayer-trust.XXXX)
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >$T/out 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' $T/out | tail -20; fi; }
cleanup() {
  "$Z" down trust >/dev/null 2>&1
  "$Z" node stop >/dev/null 2>&1; sleep 0.3
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR" 2>/dev/null
  rm -rf "$ZLAYER_DATA_DIR" "$T"
}
trap cleanup EXIT
export Z T

"$Z" image import images/out/busybox.tar >/dev/null && "$Z" image import images/out/demo.tar >/dev/null
mkdir -p $T/share/models && echo weights > $T/share/models/w && ln -s / $T/share/rootlink
setsid "$Z" node start --allow-host-path $T/share --log-max-size 64Ki --log-max-files 3 --port-max-connections 32 </dev/null >$T/node.log 2>&1 &
for _ in $(seq 1 100); do "$Z" ps >/dev/null 2>&1 && break; sleep 0.1; done

spec() { # spec SOURCE: a deployment binding SOURCE at /data
  cat > $T/trust.yaml <<YAML
version: v1
deployment: trust
services:
  app:
    image: { name: busybox }
    command: { entrypoint: ["/bin/sh", "-c", "cat /data/w; sleep 300"] }
    storage:
      - { type: bind, source: $1, target: /data, readonly: true }
YAML
}
refused() { # refused SOURCE WORDS: `up` fails with FILE:LINE:COL, the field and WORDS; nothing runs
  spec "$1"
  local out; out=$("$Z" up -d --timeout 30 $T/trust.yaml 2>&1); echo "$out"
  echo "$out" | grep -qF "error: $T/trust.yaml:8:31: services.app.storage[0].source: $2" && ! "$Z" ps | grep -q trust
}
export -f spec refused
check "a host path outside the allowed prefixes is refused" refused /etc \
  "bind mount of host path /etc refused: it is not under a prefix this node allows ($T/share); add one with \`--allow-host-path PREFIX\`"
check "/ is always refused, even through a symlink under an allowed prefix" refused $T/share/rootlink \
  "bind mount of $T/share/rootlink (which is /) is always refused: it is the host's root"
check "/proc is always refused" refused /proc/self "bind mount of /proc/self (which is"
check "the data dir is always refused" refused "$ZLAYER_DATA_DIR/images" \
  "bind mount of $ZLAYER_DATA_DIR/images is always refused: it exposes zlayer's data dir $ZLAYER_DATA_DIR"
check "a path under an allowed prefix is mounted" bash -c "
  spec $T/share/models && '$Z' up -d --timeout 60 $T/trust.yaml && sleep 1 && '$Z' logs app 2>&1 | grep -q weights; '$Z' down trust >/dev/null"

probe() { "$Z" run --rm -e PROBE_SYSCALLS=1 demo; }
export -f probe
check "seccomp: clone with any namespace flag is EPERM, a plain fork works" bash -c "
  out=\$(probe); echo \"\$out\"
  [ \$(echo \"\$out\" | grep -c '^clone(CLONE_NEW[A-Z]*): EPERM\$') = 7 ] && echo \"\$out\" | grep -qx 'clone(plain fork): ok'"
check "seccomp: clone3 is ENOSYS (libc falls back to clone), io_uring_setup is EPERM" bash -c "
  out=\$(probe); echo \"\$out\"; echo \"\$out\" | grep -qx 'clone3: ENOSYS' && echo \"\$out\" | grep -qx 'io_uring_setup: EPERM'"
check "busybox unshare cannot make a namespace" bash -c "! '$Z' run --rm busybox -- unshare -n true"
default_pids() {
  local said; said=$(mktemp)
  "$Z" run --rm busybox -- /bin/sh -c 'echo started; sleep 2' > "$said" &
  local run=$! id="" i got
  for i in $(seq 1 100); do grep -q started "$said" 2>/dev/null && break; sleep 0.05; done
  rm -f "$said"
  id=$(find /sys/fs/cgroup -maxdepth 3 -type d -path "*/zlayer/run-$run-*" -printf '%f\n' 2>/dev/null | head -1)
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then got=$(cat /sys/fs/cgroup/zlayer/$id/pids.max)
  else got=$(cat /sys/fs/cgroup/pids/zlayer/$id/pids.max); fi
  wait $run; echo "pids.max of $id: $got"; [ "$got" = 2048 ]
}
export -f default_pids
check "a container without a pids limit gets the default (2048)" default_pids
check "data dir 0711; images, cluster, logs, state 0700" bash -c "
  [ \$(stat -c %a $ZLAYER_DATA_DIR) = 711 ] && for d in images cluster logs state; do [ \$(stat -c %a $ZLAYER_DATA_DIR/\$d) = 700 ] || exit 1; done"
check "another host user cannot reach a container's upper dir" bash -c "
  '$Z' run --rm busybox -- sleep 3 >/dev/null 2>&1 & run=\$!
  sleep 1.5; upper=\$(find $ZLAYER_DATA_DIR/images/snapshots -maxdepth 2 -name upper | head -1); echo \"upper: \$upper\"
  [ -n \"\$upper\" ] && ls \"\$upper\" >/dev/null && ! setpriv --reuid=65534 --regid=65534 --clear-groups ls \"\$upper\" 2>/dev/null; r=\$?; wait \$run; exit \$r"
# About 600 KiB of output against a 64Ki x 3 cap: three files, each at most 64Ki, holding the
# newest lines in order; the container never blocks on its output.
log_rotation() {
  cat > $T/chatty.yaml <<YAML
version: v1
deployment: trust
services:
  app:
    image: { name: busybox }
    command: { entrypoint: ["/bin/sh", "-c", "seq 1 100000; echo END; sleep 300"] }
YAML
  "$Z" up -d --timeout 30 $T/chatty.yaml >/dev/null || return 1
  local i; for i in $(seq 1 150); do [ "$("$Z" logs app 2>/dev/null | tail -1)" = END ] && break; sleep 0.2; done
  local log=$ZLAYER_DATA_DIR/logs/trust/app-1.log
  ls -l $log*; "$Z" ps | grep trust/app
  [ "$("$Z" logs app | tail -1)" = END ] || { echo "the end of the output never reached the log"; return 1; }
  [ -f $log.2 ] && [ ! -e $log.3 ] || { echo "not exactly three files"; return 1; }
  local f; for f in $log $log.1 $log.2; do [ "$(stat -c %s $f)" -le 65536 ] || { echo "$f is over 64Ki"; return 1; }; done
  # What `logs` shows: the files oldest first, consecutive numbers up to 100000, then END (the
  # oldest file may start inside a line, so its first line is left out).
  "$Z" logs app | tail -n +2 | head -n -1 | awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad || prev != 100000 }' ||
    { echo "the kept lines are not the newest, in order"; return 1; }
  [ "$("$Z" logs app | sed -n 2p)" -gt 1 ] && "$Z" ps | grep -q 'trust/app .*running'
}
export -f log_rotation
check "a replica's log rotates at --log-max-size, keeping --log-max-files files" log_rotation

# 100 idle connections against a published port the node caps at 32: the node holds at most 32
# (each new one closes the longest idle), a new client is still served and the node still answers.
# Before the cap, all 100 were held, two descriptors each, for as long as the flooder liked.
port_flood() {
  cat > $T/flood.yaml <<YAML
version: v1
deployment: flood
services:
  web:
    image: { name: demo }
    env: { PORT: "8080" }
    endpoints:
      - { name: http, protocol: http, port: 8080, host_port: 18080, expose: public }
    health: { start_grace: 1s, interval: 1s, check: { type: http, url: "http://localhost:8080/health" } }
YAML
  "$Z" up -d --timeout 60 $T/flood.yaml >/dev/null || return 1
  local fds=() fd i
  for i in $(seq 1 100); do exec {fd}<>/dev/tcp/127.0.0.1/18080 || return 1; fds+=("$fd"); done
  sleep 1
  local held; held=$(ss -Htn state established '( sport = :18080 )' | wc -l)
  echo "connections the node holds on the published port: $held"
  local served; served=$(curl -s -m 5 http://127.0.0.1:18080/)
  echo "a new client got: $served"
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  "$Z" ps | grep -q 'flood/web .*running' && "$Z" down flood >/dev/null || return 1
  [ "$held" -le 32 ] && echo "$served" | grep -q 'hello from'
}
export -f port_flood
check "an idle-connection flood on a published port is capped; new clients are served" port_flood

# 300 idle connections to the node's unix socket (cap 256): the CLI is still answered at once,
# because a new connection closes the oldest idle one. Before, the 257th and later were closed
# at accept until the idle ones hit the 10 s header timeout.
api_flood() {
  local sock=$ZLAYER_DATA_DIR/zlayer.sock i pids=()
  for i in $(seq 1 300); do socat -u EXEC:'sleep 59' "UNIX-CONNECT:$sock" 2>/dev/null & pids+=($!); done
  sleep 1
  echo "connections the node holds on its socket: $(ss -Hx | awk -v s="$sock" '$5 == s' | wc -l)"
  local out rc=0; out=$("$Z" ps 2>&1) || rc=$?
  echo "ps during the flood (rc $rc): $out"
  kill "${pids[@]}" 2>/dev/null; pkill -f 'sleep 59'; wait "${pids[@]}" 2>/dev/null
  [ "$rc" -eq 0 ] && "$Z" ps >/dev/null
}
export -f api_flood
check "an idle-connection flood on the unix API never locks the CLI out" api_flood
"$Z" down trust >/dev/null 2>&1

echo "e2e-trust: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
