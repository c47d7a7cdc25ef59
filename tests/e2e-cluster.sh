#!/usr/bin/env bash
# Multi-node tests: real zlayer processes, each in its own network namespace
# (scripts/netns-cluster), real containers, real mTLS between nodes. Covers a
# 3-node join, every refused-token case, a deploy that spreads, Dedicated and
# Exclusive placement, leader loss during writes, node loss, a partition
# healed with fencing, drain, `depends` across nodes, rollouts across
# nodes, named volumes pinning their replicas, images pulled on every node
# with a pull secret, job retries placed on other nodes, configs, scale,
# restart and rollout undo from a follower, and an idle cluster's Raft
# store staying small. Every wait is bounded; the cluster is torn down on exit, also when a check fails. Prints PASS/FAIL per check, then
# "e2e-cluster: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib/netns-checks.sh zlc
source tests/lib/registry.sh
# pull_everywhere's registry, on the hub: plain HTTP.
export ZLC_NODE_ARGS="--insecure-registry 10.77.0.254:5000"
cleanup() { $NC down >/dev/null 2>&1; rm -rf "$ZLC_DIR"; }
trap cleanup EXIT

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

# A member's certificate is authority only for what its node record allows.
# member_call NODE PATH BODY: POST with NODE's certificate to the leader;
# prints the status and the body.
member_call() {
  local d=$ZLC_DIR/$1/cluster l; l=$(leader 1)
  nsenter --net=/run/netns/zlc5 curl -s --cacert "$d/ca.pem" --cert "$d/node.pem" --key "$d/node.key" \
    -o "$ZLC_DIR/mc.out" -w '%{http_code} ' -X POST -d "$3" "https://10.77.0.$l:7443$2"
  cat "$ZLC_DIR/mc.out"; echo
}
# Member ids are u64s, which jq would round: read the hex column of `node ls`.
id_of() { printf '%d' "0x$(z 1 node ls | awk -v n="$1" '$2 == n { print $1 }')"; }
mint() { echo '{"CreateToken":{"id":"'"$1"'","secret_sha256":"00","created_ms":0,"expires_ms":99999999999999,"uses":null,"used":0,"revoked":false,"kind":"api"}}'; }
heartbeat_for() { echo '{"Heartbeat":{"id":'"$(id_of "$1")"',"at_ms":1}}'; }
expect() { # $1: output of member_call, $2: status, $3: the exact refusal
  echo "$1"; [ "${1%% *}" = "$2" ] && { [ -z "${3:-}" ] || [ "${1#* }" = "$3" ]; }
}
stop5() { z 1 node rm n5 >/dev/null; pkill -9 -f "data-dir $ZLC_DIR/n5 node start"; sleep 0.5; }
worker_bounds() {
  local t out w; t=$(z 1 token create) || return 1
  join5 "$t" || return 1
  z 1 node ls | grep -E ' n5 .* worker ' || return 1
  w=$(id_of n5)
  expect "$(member_call n5 /cluster/write "$(mint w0rker01)")" 403 \
    "node n5 is a worker and may not commit CreateToken: only managers change tokens, specs, placements and nodes (join a manager with \`zlayer token create --role manager\`)" &&
  expect "$(member_call n5 /cluster/write "$(heartbeat_for n2)")" 403 \
    "node n5 (member $w) may not send a heartbeat for member $(id_of n2): a node speaks only for itself" &&
  expect "$(member_call n3 /cluster/write "$(heartbeat_for n2)")" 403 \
    "node n3 (member $(id_of n3)) may not send a heartbeat for member $(id_of n2): a node speaks only for itself" &&
  expect "$(member_call n5 /raft/vote '{"vote":{"leader_id":{"term":999,"node_id":'"$(id_of n1)"'},"committed":false},"last_log_id":null}')" 403 \
    "the certificate of member $w sent a Raft RPC as member $(id_of n1); a member speaks only for itself" &&
  expect "$(member_call n5 /raft/vote '{"vote":{"leader_id":{"term":999,"node_id":'"$w"'},"committed":false},"last_log_id":null}')" 403 \
    "node n5 is a worker; only managers take part in Raft" &&
  expect "$(member_call n5 /api/v1/exec '{"target":"x/1","command":["id"]}')" 403 \
    "node n5 is a worker: only a manager may reach replicas on other nodes (use a manager, or an API token)" &&
  expect "$(member_call n3 /api/v1/down/x '')" 404 \
    '{"error":"a node forwards only logs, exec and events to another node"}' &&
  ! z 1 token ls | grep -q w0rker01 && [ "$(z 1 node ls -o json | jq -r '.[] | select(.name == "n5") | .role')" = learner ]
}
check "a worker's certificate: no CreateToken, no heartbeat for another node (nor from a manager), no Raft RPC as another or as itself, no forwarded exec; a manager's forwards only logs, exec and events" worker_bounds
removed_manager() {
  stop5; rm -rf "$ZLC_DIR/n5"
  local t m; t=$(z 1 token create --role manager) || return 1
  join5 "$t" || return 1
  z 1 node ls | grep -E ' n5 .* manager ' || return 1
  m=$(id_of n5)
  expect "$(member_call n5 /cluster/write "$(mint m4nager1)")" 200 && z 1 token ls | grep -q m4nager1 || return 1
  stop5
  expect "$(member_call n5 /cluster/write "$(mint m4nager2)")" 403 \
    "the certificate of member $m belongs to a removed node; it is refused for good" &&
  expect "$(member_call n5 /raft/vote '{"vote":{"leader_id":{"term":999,"node_id":'"$m"'},"committed":false},"last_log_id":null}')" 403 \
    "member $m was removed; its Raft RPCs are refused for good" &&
  ! z 1 token ls | grep -q m4nager2 && z 1 token revoke m4nager1 >/dev/null
}
check "a manager may commit a token; once removed, its certificate is refused on writes and Raft" removed_manager
duplicate_address() {
  rm -rf "$ZLC_DIR/n5"
  local t t2 out; t=$(z 1 token create) && t2=$(z 1 token create) || return 1
  join5 "$t" || return 1
  out=$(nsenter --net=/run/netns/zlc5 "$ZLAYER" --data-dir "$ZLC_DIR/n6" join 10.77.0.1 --token "$t2" --advertise 10.77.0.5 --name n6 2>&1)
  echo "$out"; stop5; rm -rf "$ZLC_DIR/n5"
  echo "$out" | grep -qF "address 10.77.0.5:7443 is already advertised by node n5" && [ ! -e "$ZLC_DIR/n6/cluster/node.json" ]
}
check "a join that advertises another member's address is refused" duplicate_address
# Renewal: n5 joins as a worker, then restarts with --cert-renew-before longer than a
# certificate's life, so it renews at its first check. Its new certificate is on disk, served
# (openssl s_client), and heartbeats keep it ready; the one it renewed from still counts.
fingerprint() { openssl x509 -noout -fingerprint -sha256 | cut -d= -f2; }
served_by5() { nsenter --net=/run/netns/zlc5 openssl s_client -connect 10.77.0.5:7443 -CAfile "$ZLC_DIR/n5/cluster/ca.pem" </dev/null 2>/dev/null | fingerprint; }
renewal() {
  rm -rf "$ZLC_DIR/n5"
  local t d=$ZLC_DIR/n5/cluster first; t=$(z 1 token create) || return 1
  join5 "$t" || return 1
  pkill -9 -f "data-dir $ZLC_DIR/n5 node start"; sleep 0.5
  cp "$d/node.pem" "$ZLC_DIR/n5-first.pem"; cp "$d/node.key" "$ZLC_DIR/n5-first.key"
  first=$(fingerprint < "$d/node.pem")
  setsid nsenter --net=/run/netns/zlc5 "$ZLAYER" --data-dir "$ZLC_DIR/n5" node start --advertise 10.77.0.5 \
    --name n5 --cert-renew-before 400days </dev/null >"$ZLC_DIR/n5.log" 2>&1 &
  eventually 150 bash -c "[ \"\$(openssl x509 -noout -fingerprint -sha256 < $d/node.pem | cut -d= -f2)\" != $first ]" || return 1
  local now; now=$(fingerprint < "$d/node.pem")
  echo "joined with $first, renewed to $now, serving $(served_by5)"
  grep "renewed this node's certificate" "$ZLC_DIR/n5.log" || return 1
  [ "$(served_by5)" = "$now" ] || return 1
  sleep 4  # longer than --down-after: a node whose heartbeats were refused would be down by now
  node_is 1 5 ready || return 1
  local l; l=$(leader 1)
  local out; out=$(nsenter --net=/run/netns/zlc5 curl -s --cacert "$d/ca.pem" --cert "$ZLC_DIR/n5-first.pem" \
    --key "$ZLC_DIR/n5-first.key" -w ' %{http_code}' -X POST -d "$(heartbeat_for n5)" "https://10.77.0.$l:7443/cluster/write")
  echo "the first certificate, after the renewal: $out"
  stop5; rm -rf "$ZLC_DIR/n5"
  [ "${out##* }" = 200 ]
}
check "a node renews its certificate over mTLS, serves the new one and stays ready" renewal

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
remote_local_only() { # raw HTTPS with an API token: the CLI itself would not even send these
  local t id secret code call
  t=$(z 1 token create --api --ttl 10m) || return 1
  id=$(token_json "$t" | jq -r .id); secret=$(token_json "$t" | jq -r .secret)
  for call in "POST /api/v1/shutdown" "GET /api/v1/locate/x" "GET /api/metrics"; do
    code=$(nsenter --net=/run/netns/zlc2 curl -s --cacert "$ZLC_DIR/n1/cluster/ca.pem" -H "Authorization: Bearer $id.$secret" \
      -o "$ZLC_DIR/rl.out" -w '%{http_code}' -X "${call% *}" "https://10.77.0.3:7443${call#* }")
    echo "$call: $code $(cat "$ZLC_DIR/rl.out")"
    [ "$code" = 404 ] && grep -q "is served only on the node's own unix socket, not to remote CLIs" "$ZLC_DIR/rl.out" || return 1
  done
  sleep 1; z 3 node ls >/dev/null
}
check "an API token cannot stop a node, locate replicas or read metrics (local only)" remote_local_only
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
  local out; out=$(remote "$(z 1 token create --api --ttl 1m)" run --rm x 2>&1); echo "$out"
  echo "$out" | grep -q "works on the node's own files"
}
check "API tokens: wrong secret, a join token's secret, a join token, wrong CA, revoked are refused; run stays local" api_tokens
no_credentials() {
  local api raft probe
  api=$(nsenter --net=/run/netns/zlc2 curl -sk -o /dev/null -w '%{http_code}' https://10.77.0.1:7443/api/v1/ps)
  raft=$(nsenter --net=/run/netns/zlc2 curl -sk -o /dev/null -w '%{http_code}' -X POST -d '{}' https://10.77.0.1:7443/raft/vote)
  probe=$(nsenter --net=/run/netns/zlc2 curl -sk -o /dev/null -w '%{http_code}' -X POST -d '{"fill":""}' https://10.77.0.1:7443/cluster/probe)
  echo "api $api raft $raft probe $probe"; [ "$api" = 401 ] && [ "$raft" = 403 ] && [ "$probe" = 403 ]
}
check "without credentials: 401 on the API, 403 on Raft and link probes" no_credentials
big_probe() { # a member's link probe is capped at 4 MiB: 5 MiB is refused before it is kept
  local d=$ZLC_DIR/n3/cluster code
  { printf '{"fill":"'; head -c $((5 << 20)) /dev/zero | tr '\0' 0; printf '"}'; } > "$ZLC_DIR/probe.json"
  code=$(nsenter --net=/run/netns/zlc3 curl -s --cacert "$d/ca.pem" --cert "$d/node.pem" --key "$d/node.key" \
    -o "$ZLC_DIR/probe.out" -w '%{http_code}' -X POST --data-binary @"$ZLC_DIR/probe.json" https://10.77.0.1:7443/cluster/probe)
  echo "5 MiB probe: $code $(cat "$ZLC_DIR/probe.out")"; rm -f "$ZLC_DIR/probe.json"
  [ "$code" = 413 ] && grep -q "limit 4194304 bytes" "$ZLC_DIR/probe.out"
}
check "a member's link probe over 4 MiB is refused (413)" big_probe

spreads() {
  z 1 up -d --timeout 60 specs/cluster/spread.yaml || return 1
  # Node 2 sees the others' replicas as their heartbeats report them.
  eventually 100 bash -c "[ \"\$($NC z 2 ps -o json | jq -r '[.[] | select(.deployment == \"spread\" and .state == \"running\") | .node] | sort | join(\",\")')\" = n1,n2,n3 ]"
}
check "a deploy spreads one replica per node" spreads

# `events` on a manager gathers every live node's events over mTLS, and
# `events -f` follows them: a restart on another node shows up on n1.
events_everywhere() {
  [ "$(z 1 events -o json | jq -r '[.[] | select(.deployment == "spread" and .kind == "started") | .node] | unique | join(",")')" = n1,n2,n3 ] || { z 1 events; return 1; }
  local out; out=$(mktemp)
  timeout 90 $NC z 1 events -f -o json > "$out" &
  local f=$!
  eventually 100 grep -q '"deployment":"spread"' "$out" || { kill $f; return 1; }
  local before; before=$(wc -l < "$out")
  z 1 restart spread/sleeper >/dev/null || { kill $f; return 1; }
  # The rollout's new starts, on n2 and n3 as on n1, arrive after the old lines.
  local n
  for n in n2 n3; do
    eventually 150 bash -c "tail -n +$((before + 1)) $out | jq -e 'select(.node == \"$n\" and .kind == \"started\")' >/dev/null" || { kill $f; tail -5 "$out"; return 1; }
  done
  kill $f; wait $f 2>/dev/null
  [ "$(sort "$out" | uniq -d | wc -l)" = 0 ]
}
check "events: a manager shows every node's events, and events -f follows another node's as they happen" events_everywhere

# A job task's failed attempts move: the leader places each retry on a node
# the task has not failed on, so 3 attempts run on the 3 nodes, then it gives up.
retry_runs_are() { [ "$(z 2 job ls -o json | jq -r '[.[] | select(.job == "retry/doomed")][0].runs | map(.node + ":" + (.attempt | tostring)) | sort | join(",")')" = "$1" ]; }
retries_elsewhere() {
  z 1 up -d --timeout 2 specs/cluster/retry.yaml >/dev/null 2>&1
  eventually 300 is 1 '.deployment == "retry" and .state == "failed" and .message == "gave up after 3 attempt(s): exited with code 3"' 1 || { z 1 ps | grep retry; return 1; }
  local nodes; nodes=$(z 1 events -o json | jq -r '[.[] | select(.deployment == "retry" and .kind == "started") | .node] | join(",")')
  echo "attempts ran on: $nodes"
  [ "$(echo "$nodes" | tr , '\n' | sort -u | wc -l)" = 3 ] && [ "$(echo "$nodes" | tr , '\n' | wc -l)" = 3 ] || return 1
  # Each node metered its own attempt, and any node shows all three records.
  local want; want=$(echo "$nodes" | tr , '\n' | awk '{print $0 ":" NR}' | sort | paste -sd,)
  eventually 100 retry_runs_are "$want" || { echo "want $want"; z 2 job ls -o json; return 1; }
}
check "jobs: a failed task's retries are placed by the leader on nodes it has not failed on; each node meters its own attempt" retries_elsewhere
z 1 down retry >/dev/null 2>&1

# Secrets across nodes: n5 joins as a worker (no CA key), and a replica placed
# on it gets the value from the leader over mTLS. The leader refuses n5's
# certificate a secret its service does not use, or one for a service it does
# not run (spread/sleeper runs on n1-n3 only). `down` leaves no secrets tmpfs.
secrets_across() {
  rm -rf "$ZLC_DIR/n5"
  "$ZLAYER" --data-dir "$ZLC_DIR/n5" image import images/out/busybox.tar >/dev/null || return 1
  local t; t=$(z 1 token create) || return 1
  join5 "$t" || return 1
  [ ! -e "$ZLC_DIR/n5/cluster/ca.key" ] || { echo "a worker holds the CA key"; return 1; }
  printf 'zl-canary-cluster' | z 1 secret create cl-db - || return 1
  z 1 secret create cl-other --from-literal other || return 1
  cat > "$ZLC_DIR/clsec.yaml" <<'YAML'
version: v1
deployment: clsec
services:
  app:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    env: { DB: $S:cl-db }
    secrets: [cl-db]
    scale: { mode: fixed, replicas: 4 }
    node_mode: dedicated
YAML
  z 1 up -d --timeout 60 "$ZLC_DIR/clsec.yaml" || return 1
  eventually 150 is 1 '.deployment == "clsec" and .state == "running"' 4 || { z 1 ps; return 1; }
  local r; r=$(z 1 ps -o json | jq -r '.[] | select(.deployment == "clsec" and .node == "n5") | .replica')
  [ -n "$r" ] || { z 1 ps; return 1; }
  [ "$(z 1 exec "app/$r" -- /bin/sh -c 'echo "$DB"')" = zl-canary-cluster ] || return 1
  [ "$(z 1 exec "app/$r" -- cat /run/secrets/cl-db)" = zl-canary-cluster ] || return 1
  expect "$(member_call n5 /cluster/secrets '{"deployment":"clsec","service":"app","names":["cl-other"]}')" 200 \
    '{"Refused":"clsec/app does not use secret `cl-other`"}' &&
  expect "$(member_call n5 /cluster/secrets '{"deployment":"spread","service":"sleeper","names":["cl-db"]}')" 200 \
    '{"Refused":"node n5 runs no replica of spread/sleeper; secrets go only to the nodes that run their consumers"}' || return 1
  ! grep -a -r -l zl-canary-cluster "$ZLC_DIR" 2>/dev/null | grep -q . || { echo "the canary is in a node's files"; return 1; }
  z 1 down clsec || return 1
  eventually 100 bash -c '! grep -q " /run/zlayer/secrets/clsec-" /proc/mounts' || { echo "a secrets tmpfs is left"; return 1; }
  z 1 secret rm cl-db && z 1 secret rm cl-other
}
secrets_across_then_stop5() { secrets_across; local rc=$?; z 1 down clsec >/dev/null 2>&1; stop5; rm -rf "$ZLC_DIR/n5"; return $rc; }
check "secrets: a worker gets a value only for a replica placed on it; the leader refuses other asks; down unmounts" secrets_across_then_stop5

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
  eventually 100 bash -c "[ \$($NC z $L ps -o json | jq '[.[] | select(.node == \"n$V\" and .state == \"unknown\")] | length') -ge 1 ]" || return 1
  is "$L" ".node == \"n$V\" and .state == \"running\"" 0 || return 1
  eventually 100 is "$L" ".deployment == \"spread\" and .state == \"running\" and .node != \"n$V\"" 3 || return 1
  $NC start "$V" || return 1
  # Back, it stops the containers it ran before: their slots are elsewhere now.
  eventually 100 is "$V" ".node == \"n$V\" and .deployment == \"spread\" and .container_id != \"\"" 0 || return 1
  eventually 100 node_is "$L" "$V" ready
}
check "a killed node's replicas move; back, it stops its stale ones" node_loss

# A named volume is claimed on the node of its first replica and pins every
# replica there: scaled to 0 and back they return to it, and with that node
# killed they wait (pending) instead of starting empty elsewhere.
volume_pinned() {
  local V Q
  cat > "$ZLC_DIR/clvol.yaml" <<'YAML'
version: v1
deployment: clvol
services:
  db:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    storage: [{ type: named, name: data, target: /data, size: 8Mi }]
    scale: { mode: fixed, replicas: 2 }
YAML
  z 1 up -d --timeout 60 "$ZLC_DIR/clvol.yaml" || return 1
  V=$(z 1 volume inspect clvol/data | jq -r .node | sed 's/^n//')
  [ -n "$V" ] || return 1
  eventually 100 is 1 ".deployment == \"clvol\" and .state == \"running\" and .node == \"n$V\"" 2 || { z 1 ps; return 1; }
  z 1 exec db/1 -- /bin/sh -c 'echo kept > /data/f' || return 1
  z 1 scale clvol/db 0 && eventually 100 is 1 '.deployment == "clvol" and .state == "running"' 0 || return 1
  z 1 scale clvol/db 2 || return 1
  eventually 100 is 1 ".deployment == \"clvol\" and .state == \"running\" and .node == \"n$V\"" 2 || { z 1 ps; return 1; }
  [ "$(z 1 exec db/2 -- cat /data/f)" = kept ] || return 1
  Q=$(( V % 3 + 1 ))
  $NC kill "$V"
  eventually 100 node_is "$Q" "$V" down || return 1
  eventually 100 bash -c "$NC z $Q ps | grep clvol | grep -q 'pending: .*volume'" || { z "$Q" ps; return 1; }
  is "$Q" '.deployment == "clvol" and .state == "running"' 0 || return 1
  $NC start "$V" || return 1
  eventually 150 is "$Q" ".deployment == \"clvol\" and .state == \"running\" and .node == \"n$V\"" 2 || { z "$Q" ps; return 1; }
  [ "$(z "$Q" exec db/1 -- cat /data/f)" = kept ] || return 1
  z "$Q" down clvol && z "$Q" volume rm clvol/data
}
volume_pinned_then_down() { volume_pinned; local rc=$?; z 1 down clvol >/dev/null 2>&1; return $rc; }
check "a named volume pins its replicas to its node: back after scale 0, pending while the node is down" volume_pinned_then_down

# Images on every node: a registry with htpasswd auth on the hub (10.77.0.254,
# plain HTTP, named insecure on each node), an image no node holds, and three
# dedicated replicas: every node pulls it when it starts its replica, with the
# spec's pull_secret, which only those nodes get. Without the secret a pull is
# refused and the replica says why.
pull_everywhere() {
  local R=10.77.0.254:5000 P="$ZLC_DIR/reg"
  mkdir -p "$P"
  htpasswd -Bbn puller pull-pw-0 > "$P/htpasswd" 2>/dev/null || return 1
  ip -n zlchub addr add 10.77.0.254/24 dev br0 2>/dev/null
  ip -n zlchub link set lo up
  REG_ROOT=$P REG_NETNS=zlchub start_registry cl "$R" "$P/htpasswd" >/dev/null 2>&1
  # start_registry waits through the host's curl, which cannot reach the hub: wait here.
  eventually 50 ip netns exec zlchub curl -s -o /dev/null -m 1 "http://$R/v2/" || return 1
  local tag
  for tag in 1 2; do
    ip netns exec zlchub skopeo copy -q --dest-creds puller:pull-pw-0 --dest-tls-verify=false \
      oci-archive:images/out/busybox.tar:latest "docker://$R/cl/tool:$tag" || return 1
  done
  for i in 1 2 3; do ! "$ZLAYER" --data-dir "$ZLC_DIR/n$i" image ls | grep -q cl/tool || return 1; done
  printf 'puller:pull-pw-0\n' | z 1 secret create reg-cred - >/dev/null || return 1
  cat > "$ZLC_DIR/pull.yaml" <<YAML
version: v1
deployment: pulled
services:
  tool:
    image: { name: "$R/cl/tool:1", pull_secret: reg-cred }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    scale: { mode: fixed, replicas: 3 }
    node_mode: dedicated
YAML
  z 1 up -d --timeout 90 "$ZLC_DIR/pull.yaml" || { z 1 ps; return 1; }
  eventually 150 is 1 '.deployment == "pulled" and .state == "running"' 3 || { z 1 ps; return 1; }
  for i in 1 2 3; do "$ZLAYER" --data-dir "$ZLC_DIR/n$i" image ls | grep -q cl/tool || { echo "n$i has no image"; return 1; }; done
  ! grep -a -r -l pull-pw-0 "$ZLC_DIR"/n[123] 2>/dev/null | grep -q . || { echo "the registry password is in a node's files"; return 1; }
  # A wrong credential for a tag no node holds: the pull is refused and the replica says so.
  z 1 down pulled >/dev/null || return 1
  printf 'puller:wrong\n' | z 1 secret create reg-cred - >/dev/null || return 1
  sed -i 's|cl/tool:1|cl/tool:2|' "$ZLC_DIR/pull.yaml"
  z 1 up -d --timeout 3 "$ZLC_DIR/pull.yaml" >/dev/null 2>&1
  eventually 100 bash -c "$NC z 1 ps -o json | jq -e '[.[] | select(.deployment == \"pulled\" and (.message | test(\"pulling $R/cl/tool:2: .*refused access\")))] | length > 0'" || { z 1 ps -o json | jq -c '.[] | select(.deployment == "pulled")'; return 1; }
  z 1 down pulled >/dev/null && z 1 secret rm reg-cred >/dev/null
}
pull_everywhere_then_stop() { pull_everywhere; local rc=$?; z 1 down pulled >/dev/null 2>&1; REG_ROOT="$ZLC_DIR/reg" stop_registry cl; return $rc; }
check "images on every node: each node pulls a replica's image with the spec's pull_secret; a wrong one is refused and said" pull_everywhere_then_stop

partition() {
  local L P O
  L=$(leader 1); P=$(( L % 3 + 1 )); O=$(( 6 - L - P ))
  z "$L" down spread >/dev/null; z "$L" up -d --timeout 60 specs/cluster/spread.yaml >/dev/null || return 1
  eventually 100 is "$P" "$(here "$P")" 1 || return 1
  $NC partition "$P"
  eventually 100 is "$P" "$(here "$P")" 0 || { echo "the partitioned node kept its replica"; return 1; }
  eventually 100 is "$L" ".deployment == \"spread\" and .state == \"running\" and .node != \"n$P\"" 3 || { echo "not rescheduled"; return 1; }
  $NC heal "$P"
  eventually 100 node_is "$L" "$P" ready || return 1
  sleep 2
  is "$P" ".node == \"n$P\" and .container_id != \"\"" 0 && is "$O" '.deployment == "spread" and .state == "running"' 3
}
check "a partitioned node fences itself; healed, it runs nothing stale" partition

# The followers' heartbeats were stuck on the cut-off leader for the whole
# down timeout, so they fenced themselves (stopping every replica) while
# the new leader took over. A leader's partition stops only its own work.
ids_here() { z "$1" ps -o json | jq -r "[.[] | select($(here "$1"))] | map(.container_id) | sort | join(\",\")"; }
leads_not() { local l; l=$(leader "$1"); [ -n "$l" ] && [ "$l" != "$2" ]; }
leader_partition() {
  local L F G before after
  L=$(leader 1); F=$(( L % 3 + 1 )); G=$(( 6 - L - F ))
  z "$L" down spread >/dev/null 2>&1; z "$L" up -d --timeout 60 specs/cluster/spread.yaml >/dev/null || return 1
  before="$(ids_here "$F") $(ids_here "$G")"
  [ "$(echo "$before" | wc -w)" = 2 ] || { echo "followers run nothing to keep: $before"; return 1; }
  $NC partition "$L"
  eventually 100 leads_not "$F" "$L" || { echo "no new leader"; $NC heal "$L"; return 1; }
  eventually 100 node_is "$F" "$L" down || { $NC heal "$L"; return 1; }
  sleep 2
  after="$(ids_here "$F") $(ids_here "$G")"
  $NC heal "$L"
  eventually 100 node_is "$F" "$L" ready || return 1
  # The leader's own slot moves to a follower; what the followers ran stays.
  local id
  for id in $(echo "$before" | tr ', ' '\n\n'); do
    case ",${after// /,}," in *",$id,"*) ;; *) echo "the followers' replicas were restarted: $before -> $after"; return 1;; esac
  done
}
check "a partitioned leader: the others elect a new one and keep their replicas running" leader_partition

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
  healthy=$(z 2 events -o json | jq '[.[] | select(.deployment == "tiers" and .node == "n2" and .service == "db" and .kind == "health" and (.message | endswith("-> healthy")))][0].time_ms')
  started=$(z 3 events -o json | jq '[.[] | select(.deployment == "tiers" and .node == "n3" and .service == "web" and .kind == "started")][0].time_ms')
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
    update: { parallelism: 1, timeout: 60s }
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
  eventually 100 bash -c "$NC z 2 rollouts | grep -qE '^rolls/web .* failed +n[123] '" || { z 2 rollouts; return 1; }
  z 2 rollouts
  sleep 1
  [ "$(rolls_ids)" = "$before" ] && is 1 '.deployment == "rolls" and .surge' 0 || { echo "old replicas changed"; z 1 ps; return 1; }
  z 1 down rolls >/dev/null
}
check "rollouts across nodes: parallelism holds cluster-wide; one node's stop fails up -d elsewhere, old replicas run on" rollouts_across

# The lifecycle commands from a follower, on replicas spread over all three
# nodes: a config and an inline file reach every node's replicas, a new
# config value rolls them, scale and restart hold cluster-wide, and
# rollout undo brings the revision before back on every node.
life_running() { is 1 '.deployment == "life" and .state == "running" and (.surge | not)' "$1"; }
life_ids() { z 1 ps -o json | jq -r '[.[] | select(.deployment == "life" and .state == "running") | .container_id] | sort | join(",")'; }
life_all() { # $1: command run in each replica, $2: what each must print
  local r out
  for r in $(z 1 ps -o json | jq -r '.[] | select(.deployment == "life" and .state == "running") | .replica'); do
    out=$(z "$F" exec "app/$r" -- /bin/sh -c "$1" 2>&1)
    [ "$out" = "$2" ] || { echo "app/$r: $out"; return 1; }
  done
}
lifecycle_across() {
  local L; L=$(leader 1); F=$(( L % 3 + 1 ))
  printf 'level=1\n' > "$ZLC_DIR/life.v1"; printf 'level=2\n' > "$ZLC_DIR/life.v2"
  z "$F" config create life-conf --from-file "$ZLC_DIR/life.v1" || return 1
  cat > "$ZLC_DIR/life.yaml" <<'YAML'
version: v1
deployment: life
services:
  app:
    image: { name: busybox:latest, pull_policy: never }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    env: { LEVEL: $E:LEVEL }
    stop: { grace: 1s }
    resources: { cpu: 0.1, memory: 16Mi }
    scale: { mode: fixed, replicas: 3 }
    files:
      - { target: /etc/app/app.conf, config: life-conf }
      - { target: /etc/motd, content: "inline hello\n" }
YAML
  LEVEL=a z "$F" up -d --timeout 60 "$ZLC_DIR/life.yaml" || return 1
  eventually 100 life_running 3 || { z 1 ps; return 1; }
  [ "$(z 1 ps -o json | jq '[.[] | select(.deployment == "life") | .node] | unique | length')" -eq 3 ] || { z 1 ps; return 1; }
  life_all 'cat /etc/app/app.conf /etc/motd; echo $LEVEL' "$(printf 'level=1\ninline hello\na')" || return 1
  local before; before=$(life_ids)
  z "$F" config create life-conf --from-file "$ZLC_DIR/life.v2" || return 1
  eventually 150 life_all 'cat /etc/app/app.conf' level=2 || { z 1 rollouts; return 1; }
  [ "$(life_ids)" != "$before" ] || return 1
  echo "a new config value rolled the replicas on every node"
  z "$F" scale life/app 5 || return 1
  eventually 100 life_running 5 || { z 1 ps; return 1; }
  LEVEL=a z "$L" up -d --timeout 60 "$ZLC_DIR/life.yaml" >/dev/null || return 1
  life_running 5 || { echo "up of the same spec on the leader undid the scale"; z 1 ps; return 1; }
  z "$F" scale life/app 3 || return 1
  eventually 100 life_running 3 || { z 1 ps; return 1; }
  before=$(life_ids)
  z "$F" restart life/app || return 1
  eventually 150 bash -c "[ \"\$($NC z 1 ps -o json | jq '[.[] | select(.deployment == \"life\" and .state == \"running\" and (.container_id | inside(\"$before\") | not))] | length')\" = 3 ]" || { z 1 ps; return 1; }
  echo "restart replaced all 3"
  LEVEL=b z "$F" up -d --timeout 60 "$ZLC_DIR/life.yaml" >/dev/null || return 1
  life_all 'echo $LEVEL' b || return 1
  z "$F" rollout history life | grep -q "(current)" || return 1
  z "$F" rollout undo life || return 1
  eventually 150 life_all 'echo $LEVEL' a || { z 1 rollouts; return 1; }
  echo "undo from n$F brought LEVEL=a back on every node"
  z 1 down life >/dev/null && z "$F" config rm life-conf
}
check "lifecycle from a follower: config and inline files on every node's replicas, a new config value rolls them, scale and restart hold cluster-wide, rollout undo" lifecycle_across

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

echo "e2e-cluster: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
