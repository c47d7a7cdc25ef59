#!/usr/bin/env bash
# Multi-node tests: real zlayer processes, each in its own network namespace
# (scripts/netns-cluster), real containers, real mTLS between nodes. Covers a
# 3-node join, every refused-token case, a deploy that spreads, Dedicated and
# Exclusive placement, leader loss during writes, node loss, a partition
# healed with fencing, drain, `depends` across nodes, rollouts across
# nodes, and an idle cluster's Raft store staying small. Every wait is bounded; the cluster is torn down on exit, also when a check fails. Prints PASS/FAIL per check, then
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export ZLC_DIR=$(mktemp -d /tmp/zlc.XXXX)
export ZLAYER=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$ZLAYER" ] || ZLAYER=$(command -v zlayer)
NC=scripts/netns-cluster
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >/tmp/e2e-cluster.out 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' /tmp/e2e-cluster.out | tail -25; fi; }
cleanup() { $NC down >/dev/null 2>&1; rm -rf "$ZLC_DIR"; }
trap cleanup EXIT

z() { $NC z "$@"; }
# Retries `cmd` every 0.2 s, at most N times: a bound against hanging, not a timing assertion.
eventually() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
# Counts rows of node $1's `ps -o json` that match the jq filter $2.
count() { z "$1" ps -o json | jq "[.[] | select($2)] | length"; }
is() { [ "$(count "$1" "$2")" -eq "$3" ]; }
# Replicas node $1 itself runs: its own rows, with a container.
here() { echo ".node == \"n$1\" and .container_id != \"\" and .state == \"running\""; }
state_of() { z "$1" node ls -o json | jq -r ".[] | select(.name == \"n$2\") | .state"; }
node_is() { [ "$(state_of "$1" "$2")" = "$3" ]; }
leader() { z "$1" node ls -o json | jq -r '.[] | select(.role == "leader") | .name' | sed 's/^n//'; }

# Token bodies are base64url JSON; forged tokens are edited copies.
token_json() { local b=${1#*.}; while [ $(( ${#b} % 4 )) -ne 0 ]; do b="$b="; done; echo "$b" | basenc --base64url -d; }
token_edit() { echo "${1%%.*}.$(token_json "$1" | jq -c "$2" | basenc --base64url -w0 | tr -d '=')"; }

three_nodes_join() {
  $NC up 3 3:role=batch 2:zone=b || return 1
  z 1 node ls
  [ "$(z 1 node ls -o json | jq '[.[] | select(.state == "ready")] | length')" -eq 3 ] &&
  [ "$(z 1 node ls -o json | jq '[.[] | select(.role == "leader")] | length')" -eq 1 ] &&
  eventually 100 bash -c "[ \$($NC z 1 node ls -o json | jq '[.[] | select(.role == \"voter\")] | length') -eq 2 ]"
}
check "3 nodes join: one leader, two voters, all ready" three_nodes_join
check "node ls shows labels, capacity and reported health" bash -c "$NC z 1 node ls | grep -E ' n3 .*role=batch' && $NC z 1 node ls -o json | jq -e '.[0].cpu_milli.total > 0 and .[0].memory_bytes.total > 0 and ([.[].health | .latency, .efficiency, .reputation | select(. >= 0 and . <= 1)] | length == 9)'"
check "the CLI works against any node" bash -c "$NC z 2 node ls | grep -q ' n1 ' && $NC z 3 token ls | grep -q USED"

# Refused joins come from a fifth namespace, wired to the bridge but never admitted.
ip netns add zlc5; ip link add zlcv5 type veth peer name eth0 netns zlc5; ip link set zlcv5 netns zlchub
ip -n zlchub link set zlcv5 master br0 up; ip -n zlc5 addr add 10.77.0.5/24 dev eth0
ip -n zlc5 link set eth0 up; ip -n zlc5 link set lo up
join5() { nsenter --net=/run/netns/zlc5 "$ZLAYER" --data-dir "$ZLC_DIR/n5" join "${2:-10.77.0.1}" --token "$1" --advertise 10.77.0.5 --name n5; }
refused() { # $1: token, $2: words the refusal must contain, $3: the address to join at
  local before after out rc; before=$(z 1 node ls -o json | jq length)
  out=$(join5 "$1" "${3:-10.77.0.1}" 2>&1); rc=$?
  after=$(z 1 node ls -o json | jq length)
  echo "rc=$rc nodes $before -> $after: $out"
  [ $rc -ne 0 ] && echo "$out" | grep -qi "$2" && [ "$before" = "$after" ] && [ ! -e "$ZLC_DIR/n5/cluster/node.json" ]
}
good=$(z 1 token create --ttl 10m)
expired() { local t; t=$(z 1 token create --ttl 1s); sleep 1.5; refused "$t" expired; }
revoked() {
  local t id; t=$(z 1 token create)
  id=$(token_json "$t" | jq -r .id)
  z 1 token revoke "$id" && z 1 token ls | grep "$id" | grep -q revoked && refused "$t" revoked
}
used_up() {
  local t; t=$(z 1 token create --uses 1)
  # The one allowed join, then undone, so the cluster stays at three nodes.
  join5 "$t" || return 1
  z 1 node rm n5 && pkill -9 -f "data-dir $ZLC_DIR/n5 node start"
  sleep 0.5; rm -rf "$ZLC_DIR/n5"
  refused "$t" "used as many times"
}
check "expired token refused, nothing written" expired
check "forged token (wrong secret) refused" refused "$(token_edit "$good" '.secret = "00112233445566778899aabbccddeeff"')" "does not know this token"
check "forged token (unknown id) refused" refused "$(token_edit "$good" '.id = "deadbeef"')" "does not know this token"
check "revoked token refused" revoked
check "wrong-CA token refused before anything is sent" refused "$(token_edit "$good" ".ca = \"$(printf 'ab%.0s' $(seq 32))\"")" "another cluster"
check "token for an unreachable cluster refused" refused "$(token_edit "$good" '.addrs = ["10.77.0.99:7443"]')" "no member" 10.77.0.99
check "not a token at all refused" refused "not-a-token" "token"
check "used-up token refused" used_up

# The remote CLI: HTTPS to a node's endpoint with an API token, from another
# namespace and without a data dir of its own.
remote() { nsenter --net=/run/netns/zlc2 "$ZLAYER" --data-dir "$ZLC_DIR/none" --api-token "$@"; }
remote_cli() {
  local t; t=$(z 1 token create --api --ttl 10m) || return 1
  remote "$t" node ls | grep -q ' n3 ' &&
    remote "$t" --remote 10.77.0.3 token ls | grep -q ' api ' &&
    remote "$t" --remote 10.77.0.3 ps >/dev/null
}
check "remote CLI with an API token works against any node" remote_cli
api_refused() { # $1: token, $2: words the refusal must contain
  local out; out=$(remote "$1" ps 2>&1); echo "$out"
  ! remote "$1" ps >/dev/null 2>&1 && echo "$out" | grep -qi "$2"
}
api_tokens() {
  local t id join_id join_secret
  t=$(z 1 token create --api --ttl 10m); id=$(token_json "$t" | jq -r .id)
  join_id=$(token_json "$good" | jq -r .id); join_secret=$(token_json "$good" | jq -r .secret)
  api_refused "$(token_edit "$t" '.secret = "00112233445566778899aabbccddeeff"')" "does not know this API token" &&
    api_refused "$(token_edit "$t" ".id = \"$join_id\" | .secret = \"$join_secret\"")" "does not know this API token" &&
    api_refused "$good" "API tokens" &&
    api_refused "$(token_edit "$t" ".ca = \"$(printf 'cd%.0s' $(seq 32))\"")" "TLS" &&
    z 1 token revoke "$id" && api_refused "$t" revoked || return 1
  local out; out=$(remote "$(z 1 token create --api --ttl 1m)" logs x 2>&1); echo "$out"
  echo "$out" | grep -q "works on the node's own files"
}
check "API tokens: wrong secret, a join token's secret, a join token, wrong CA, revoked are refused; logs stay local" api_tokens
no_credentials() {
  local api raft
  api=$(nsenter --net=/run/netns/zlc2 curl -sk -o /dev/null -w '%{http_code}' https://10.77.0.1:7443/api/v1/ps)
  raft=$(nsenter --net=/run/netns/zlc2 curl -sk -o /dev/null -w '%{http_code}' -X POST -d '{}' https://10.77.0.1:7443/raft/vote)
  echo "api $api raft $raft"; [ "$api" = 401 ] && [ "$raft" = 403 ]
}
check "without credentials: 401 on the API, 403 on Raft" no_credentials

spreads() {
  z 1 up -d --timeout 60 specs/cluster/spread.yaml || return 1
  # Node 2 sees the others' replicas as their heartbeats report them.
  eventually 50 bash -c "[ \"\$($NC z 2 ps -o json | jq -r '[.[] | select(.deployment == \"spread\" and .state == \"running\") | .node] | sort | join(\",\")')\" = n1,n2,n3 ]"
}
check "a deploy spreads one replica per node" spreads

dedicated() {
  z 2 up -d --timeout 3 specs/cluster/dedicated.yaml
  eventually 100 bash -c "[ \"\$($NC z 1 ps -o json | jq -r '[.[] | select(.deployment == \"dedicated\" and .state == \"running\") | .node] | unique | length')\" = 3 ]" || return 1
  z 1 ps | grep dedicated
  z 1 ps | grep dedicated | grep pending | grep -q "pending: no node"
}
check "dedicated: three on distinct nodes, the fourth pending with the reason" dedicated

exclusive() {
  z 1 down dedicated >/dev/null
  z 1 up -d --timeout 3 specs/cluster/exclusive.yaml
  z 1 ps | grep cruncher
  z 1 ps | grep cruncher | grep -q "running other work" || return 1
  z 1 down spread >/dev/null || return 1
  eventually 150 is 1 '.deployment == "exclusive" and .state == "running" and .node == "n3"' 1 || return 1
  z 1 up -d --timeout 60 specs/cluster/spread.yaml || return 1
  # Nothing else lands on the exclusive node.
  is 1 '.deployment == "spread" and .node == "n3"' 0 && is 1 '.deployment == "spread" and .state == "running"' 3
}
check "exclusive: pending while its node runs other work, then alone on it" exclusive
z 1 down exclusive >/dev/null 2>&1

leader_loss() {
  local L F i acked=() d n
  L=$(leader 1); F=$(( L % 3 + 1 ))
  for i in $(seq 1 12); do
    sed "s/^deployment: spread/deployment: w$i/; s/replicas: 3/replicas: 1/" specs/cluster/spread.yaml > "$ZLC_DIR/w$i.yaml"
    [ "$i" -eq 4 ] && $NC kill "$L"
    if z "$F" up -d --timeout 30 "$ZLC_DIR/w$i.yaml" >/dev/null 2>&1; then acked+=("w$i"); fi
  done
  echo "acknowledged: ${acked[*]} (n$L was killed before w4)"
  [ "${#acked[@]}" -ge 8 ] || return 1
  $NC start "$L" || return 1
  for d in "${acked[@]}"; do
    for n in 1 2 3; do
      eventually 100 is "$n" ".deployment == \"$d\" and .state == \"running\"" 1 || { echo "$d missing as seen from n$n"; return 1; }
    done
  done
  for i in $(seq 1 12); do z "$F" down "w$i" >/dev/null 2>&1; done
  true
}
check "killing the leader during writes loses no acknowledged deploy" leader_loss

node_loss() {
  local L V n
  L=$(leader 1); V=""
  # A follower that runs a replica of `spread` (where they run depends on the earlier checks).
  for n in 1 2 3; do
    [ "$n" != "$L" ] && [ "$(count "$n" "$(here "$n") and .deployment == \"spread\"")" -ge 1 ] && { V=$n; break; }
  done
  [ -n "$V" ] || { z "$L" ps; return 1; }
  $NC kill "$V"
  eventually 100 node_is "$L" "$V" down || return 1
  # Its last report no longer vouches for anything.
  eventually 50 bash -c "[ \$($NC z $L ps -o json | jq '[.[] | select(.node == \"n$V\" and .state == \"unknown\")] | length') -ge 1 ]" || return 1
  is "$L" ".node == \"n$V\" and .state == \"running\"" 0 || return 1
  eventually 100 is "$L" ".deployment == \"spread\" and .state == \"running\" and .node != \"n$V\"" 3 || return 1
  $NC start "$V" || return 1
  # Back, it stops the containers it ran before: their slots are elsewhere now.
  eventually 100 is "$V" ".node == \"n$V\" and .deployment == \"spread\" and .container_id != \"\"" 0 || return 1
  eventually 100 node_is "$L" "$V" ready
}
check "a killed node's replicas move; back, it stops its stale ones" node_loss

partition() {
  local L P O
  L=$(leader 1); P=$(( L % 3 + 1 )); O=$(( 6 - L - P ))
  z "$L" down spread >/dev/null; z "$L" up -d --timeout 60 specs/cluster/spread.yaml >/dev/null || return 1
  eventually 50 is "$P" "$(here "$P")" 1 || return 1
  $NC partition "$P"
  eventually 100 is "$P" "$(here "$P")" 0 || { echo "the partitioned node kept its replica"; return 1; }
  eventually 100 is "$L" ".deployment == \"spread\" and .state == \"running\" and .node != \"n$P\"" 3 || { echo "not rescheduled"; return 1; }
  $NC heal "$P"
  eventually 100 node_is "$L" "$P" ready || return 1
  sleep 2
  is "$P" ".node == \"n$P\" and .container_id != \"\"" 0 && is "$O" '.deployment == "spread" and .state == "running"' 3
}
check "a partitioned node fences itself; healed, it runs nothing stale" partition

drain() {
  z 1 node drain n2 || return 1
  eventually 100 is 1 '.deployment == "spread" and .state == "running" and .node == "n2"' 0 || return 1
  eventually 100 is 1 '.deployment == "spread" and .state == "running"' 3 || return 1
  z 1 node uncordon n2 && z 1 node ls | grep ' n2 ' | grep -q ready
}
check "node drain moves replicas off; uncordon takes it back" drain

# depends across nodes: web waits on n3 (role=batch) until db on n2 (zone=b) is healthy there.
depends_across() {
  z 1 up -d --timeout 60 specs/cluster/depends.yaml || return 1
  is 1 '.deployment == "tiers" and .service == "db" and .node == "n2" and .health == "healthy"' 1 || return 1
  is 1 '.deployment == "tiers" and .service == "web" and .node == "n3" and .state == "running"' 1 || return 1
  local healthy started
  healthy=$(z 2 events -o json | jq '[.[] | select(.service == "db" and .kind == "health" and (.message | endswith("-> healthy")))][0].time_ms')
  started=$(z 3 events -o json | jq '[.[] | select(.service == "web" and .kind == "started")][0].time_ms')
  echo "db healthy on n2 at $healthy, web started on n3 at $started"
  [ "$healthy" != null ] && [ "$started" != null ] && [ "$started" -ge "$healthy" ] || return 1
  z 1 down tiers >/dev/null
}
check "depends across nodes: web starts after db is healthy on another node" depends_across

# Rollouts across nodes: `update.parallelism: 1` holds for the whole
# cluster (never two replacements at once, as seen from n1), and a rollout
# that stops on one node stops it everywhere: `up -d` on another node fails
# with that node's reason, and every old replica keeps running.
rolls_apply() { MSG=$1 EXIT=$2 z 1 up -d --timeout 60 "$ZLC_DIR/rolls.yaml"; }
rolls_ids() { z 1 ps -o json | jq -r '[.[] | select(.deployment == "rolls" and .state == "running" and (.surge | not)) | .node + ":" + .container_id] | sort | join(",")'; }
rollouts_across() {
  cat > "$ZLC_DIR/rolls.yaml" <<'YAML'
version: v1
deployment: rolls
services:
  web:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "8080", MESSAGE: $E:MSG, EXIT_AFTER: $E:EXIT }
    stop: { grace: 1s }
    resources: { cpu: 0.1, memory: 32Mi }
    scale: { mode: fixed, replicas: 3 }
    update: { parallelism: 1, timeout: 5s }
    health:
      interval: 200ms
      check: { type: http, url: "http://localhost:8080/health" }
YAML
  rolls_apply v1 "" || return 1
  [ "$(rolls_ids | tr ',' '\n' | cut -d: -f1 | sort -u | wc -l)" -eq 3 ] || { z 1 ps; return 1; }
  local flag=$ZLC_DIR/rolls.flag samples=$ZLC_DIR/rolls.samples; rm -f "$flag" "$samples"
  ( n=0; while [ ! -e "$flag" ] && [ $n -lt 400 ]; do
      z 1 ps -o json | jq '[.[] | select(.deployment == "rolls" and .surge)] | length' >> "$samples"; n=$((n+1)); done ) &
  local sampler=$!
  rolls_apply v2 ""; local rc=$?
  touch "$flag"; wait $sampler
  echo "replacements at once, as sampled from n1: $(sort -n "$samples" | uniq -c | tr '\n' ' ')"
  [ $rc -eq 0 ] && [ "$(sort -n "$samples" | tail -1)" -eq 1 ] || return 1
  local before; before=$(rolls_ids); echo "before: $before"
  echo "$before" | grep -qE ':(,|$)' && { echo "a node did not report its container"; return 1; }
  local out; out=$(rolls_apply v3 0 2>&1); echo "$out"
  echo "$out" | grep -qE 'rolls/web: rollout on n[123] stopped: the new replica web/1 \(revision [0-9a-f]+\) exited before it was healthy' || return 1
  eventually 50 bash -c "$NC z 2 rollouts | grep -qE '^rolls/web .* failed +n[123] '" || { z 2 rollouts; return 1; }
  z 2 rollouts
  sleep 1
  [ "$(rolls_ids)" = "$before" ] && is 1 '.deployment == "rolls" and .surge' 0 || { echo "old replicas changed"; z 1 ps; return 1; }
  z 1 down rolls >/dev/null
}
check "rollouts across nodes: parallelism holds cluster-wide; one node's stop fails up -d elsewhere, old replicas run on" rollouts_across

# An idle cluster writes (almost) nothing to Raft: unchanged heartbeats are
# liveness calls, and reports go out only when they change. Before, every
# heartbeat carried the whole replica list: about 2 MiB a minute here.
idle_store_stays_small() {
  z 1 up -d --timeout 60 specs/cluster/spread.yaml >/dev/null || return 1
  eventually 100 is 1 '.deployment == "spread" and .state == "running"' 3 || return 1
  sleep 5
  local L; L=$(leader 1)
  local dir=$ZLC_DIR/n$L/cluster/raft before after
  before=$(du -sb "$dir" | cut -f1); sleep 30; after=$(du -sb "$dir" | cut -f1)
  echo "leader n$L's Raft store grew $((after - before)) bytes in 30 s with 3 idle replicas"
  [ $((after - before)) -lt $((50 * 1024)) ]
}
check "an idle cluster's Raft store grows by under 100 KiB a minute" idle_store_stays_small

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
