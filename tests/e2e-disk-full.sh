#!/usr/bin/env bash
# A node whose disk fills up: its data dir is a 160 MiB tmpfs, filled to the last byte while a
# replica runs. New specs and tokens are refused with the reason (the store keeps a 64 MiB
# reserve), an image import fails whole, the replica keeps running. A write the store cannot
# make (the replica is killed, so the node reports it) stops Raft; once space returns, the node
# restarts itself, re-adopts its replica and takes specs again. Uses its own data dir and the
# node's default bridge: no other zlayer node may run meanwhile.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
T=$(mktemp -d /tmp/zlayer-disk-full.XXXX)
mount -t tmpfs -o size=160m tmpfs "$T" || { echo "e2e-disk-full: cannot mount a tmpfs"; exit 1; }
# The node log lives off the full disk, so every line of it is kept.
LOG=$(mktemp /tmp/zlayer-disk-full-node.XXXX.log)
export ZLAYER_DATA_DIR=$T/data Z T LOG
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >/tmp/e2e-disk-full.out 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' /tmp/e2e-disk-full.out | tail -20; fi; }
cleanup() {
  rm -f "$T/filler"
  "$Z" down full >/dev/null 2>&1
  "$Z" node stop >/dev/null 2>&1; sleep 0.3
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR" 2>/dev/null
  mv "$LOG" /tmp/e2e-disk-full-node.log
  umount -l "$T"; rmdir "$T"
}
trap cleanup EXIT
# Retries every 0.2 s, at most N times: a bound against hanging, not a timing assertion.
eventually() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
spec() { # spec REPLICAS
  cat > /tmp/e2e-disk-full.yaml <<YAML
version: v1
deployment: full
services:
  app:
    image: { name: busybox }
    command: { entrypoint: ["/bin/sh", "-c", "echo up; sleep 3600"] }
    scale: { mode: fixed, replicas: $1 }
YAML
}
running() { [ "$("$Z" ps -o json | jq '[.[] | select(.service == "app" and .state == "running")] | length')" -eq "$1" ]; }
export -f spec running eventually

"$Z" image import images/out/busybox.tar >/dev/null
setsid "$Z" node start </dev/null >"$LOG" 2>&1 &
for _ in $(seq 1 100); do "$Z" ps >/dev/null 2>&1 && break; sleep 0.1; done
spec 1; "$Z" up -d --timeout 30 /tmp/e2e-disk-full.yaml >/dev/null; eventually 50 running 1
cid() { "$Z" ps -o json | jq -r '.[] | select(.service == "app" and .replica == 1) | .container_id'; }
first=$(cid); export first; export -f cid
me=$("$Z" node ls -o json | jq -r '.[0].name'); export me
# Fill the disk to 16 MiB short: under the store's reserve, with room for the node's own writes.
avail=$(df -m --output=avail "$T" | tail -1)
dd if=/dev/zero of="$T/filler" bs=1M count=$((avail - 16)) >/dev/null 2>&1
df -h "$T" | tail -1

check "under the reserve, a new spec is refused with the reason; Raft runs on" bash -c '
  spec 2; out=$("$Z" up -d --timeout 10 /tmp/e2e-disk-full.yaml 2>&1); echo "$out"
  echo "$out" | grep -qE "^error: $T/data/cluster has 1[0-9] MiB free, under the 64 MiB this node keeps free for its state store; nothing was written. Free space on that filesystem and retry$" &&
  running 1 && "$Z" node uncordon "$me" >/dev/null && [ "$(cid)" = "$first" ]'
check "under the reserve, a token is refused the same way" bash -c '
  out=$("$Z" token create 2>&1); echo "$out"; echo "$out" | grep -qF "under the 64 MiB this node keeps free"'
dd if=/dev/zero of="$T/filler2" bs=1M >/dev/null 2>&1
check "with the disk full, an image import fails whole" bash -c '
  out=$("$Z" image import images/out/demo.tar 2>&1); echo "$out"
  echo "$out" | grep -q "No space left on device" && ! "$Z" image ls | grep -q "^demo" &&
  [ -z "$(ls -A "$T/data/images/tmp" 2>/dev/null)" ]'
# Writes the reserve does not hold back (`node uncordon` of a ready node appends to the log, as
# heartbeats and placements would, later) until one needs a block the disk no longer has: Raft
# stops, the node says why, its replica runs on.
stop_raft() {
  local i
  for i in $(seq 1 300); do
    grep -q 'Raft stopped on a storage error' "$LOG" && break
    "$Z" node uncordon "$me" >/dev/null 2>&1
  done
  grep -E 'quit RaftCore|Raft stopped' "$LOG" | tail -2 | cut -c1-300
  local out; out=$("$Z" node uncordon "$me" 2>&1); echo "$out"
  grep -q 'Raft stopped on a storage error' "$LOG" && echo "$out" | grep -qF "this node's Raft has stopped" &&
    [ "$(cid)" = "$first" ] && pgrep -f "sleep 3600" >/dev/null
}
export -f stop_raft
check "a write the store cannot make stops Raft; the node says why, its replica runs on" stop_raft
rm -f "$T/filler" "$T/filler2"
check "once space returns the node restarts itself, re-adopts its replica and takes specs" bash -c '
  eventually 150 grep -q "has room again; restarting this node" $LOG || exit 1
  eventually 150 "$Z" ps || exit 1
  eventually 150 running 1 || exit 1
  echo "replica 1: $first before, $(cid) after"; [ "$(cid)" = "$first" ] &&
  spec 2 && "$Z" up -d --timeout 30 /tmp/e2e-disk-full.yaml && running 2 && [ "$(cid)" = "$first" ]'

echo "e2e-disk-full: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
