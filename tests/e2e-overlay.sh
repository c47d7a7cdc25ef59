#!/usr/bin/env bash
# The overlay on a 3-node netns cluster (scripts/netns-cluster, prefix zlo):
# per-node subnets, the WireGuard mesh (userspace boringtun here, the kernel
# has no module), all-pairs reachability by IP and by name, source
# addresses kept inside the cluster, DNS of healthy replicas only from
# every node, the ingress on every node (and a rollout through it that fails
# no request), udp and tcp ports on every node, a capture of the underlay that finds only WireGuard, a kill -9
# and restart, a removed node's peer and route going, and two nodes behind
# NAT (one reached through keepalives, the pair through a relay). Every wait is
# bounded; the cluster is torn down on exit. Prints PASS/FAIL per check,
# then "e2e-overlay: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
# Links are probed every second here (default 30 s), so the link check is quick.
export ZLC_NODE_ARGS="--link-probe-every 1s"
source tests/lib/netns-checks.sh zlo
cleanup() { pkill -f "tcpdump -i br0 -w $ZLC_DIR" 2>/dev/null; pkill -f "wireguard-go zlopeer0" 2>/dev/null; $NC down >/dev/null 2>&1; rm -rf "$ZLC_DIR"; }
trap cleanup EXIT

export -f z eventually; export NC

cat > "$ZLC_DIR/mesh.yaml" <<'YAML'
version: v1
deployment: mesh
services:
  web:
    image: { name: demo:latest }
    command: { entrypoint: ["/bin/sh", "-c", "touch /tmp/ok; exec /usr/local/bin/zlayer-demo"] }
    env: { PORT: "8080", MESSAGE: "mesh" }
    endpoints:
      - { name: http, protocol: http, port: 8080 }
    scale: { mode: fixed, replicas: 3 }
    health:
      interval: 200ms
      retries: 1
      check: { type: command, command: ["/bin/sh", "-c", "test -e /tmp/ok"] }
YAML

# Healthy only while /tmp/ok exists, which nothing makes but the test; the
# long grace keeps a replica that never passed from being restarted, and a
# restarted one starts without the file: it stays out of DNS until told.
cat > "$ZLC_DIR/sick.yaml" <<'YAML'
version: v1
deployment: probe
services:
  sick:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: "sick" }
    endpoints:
      - { name: http, protocol: http, port: 8080 }
    health:
      start_grace: 1h
      interval: 200ms
      retries: 1
      check: { type: command, command: ["/bin/sh", "-c", "test -e /tmp/ok"] }
YAML

# Replica N of SERVICE: "NODE IP".
at() { z 1 ps -o json | jq -r ".[] | select(.service == \"$1\" and .replica == $2 and .state == \"running\" and (.surge | not)) | \"\(.node | ltrimstr(\"n\")) \(.ip)\""; }
where() { at web "$1"; }
# Runs a shell command in SERVICE/N, on the node that runs it.
in_svc() { local svc=$1 n=$2; shift 2; local w; w=$(at "$svc" "$n"); z "${w%% *}" exec "$svc/$n" -- /bin/sh -c "$*"; }
in_replica() { local n=$1; shift; in_svc web "$n" "$@"; }
export -f at where in_svc in_replica

mesh_up() {
  $NC up 3 || return 1
  z 1 node ls
  z 1 node ls -o json | jq -e '
    ([.[].subnet] | unique | length) == 3 and
    all(.[]; .subnet | test("^10\\.240\\.[0-9]+\\.0/24$")) and
    all(.[]; .overlay == "kernel" or .overlay == "userspace")' || return 1
  # Where the kernel cannot make a WireGuard link (this machine), userspace runs.
  if ! ip link add zlo-probe type wireguard 2>/dev/null; then
    z 1 node ls -o json | jq -e 'all(.[]; .overlay == "userspace")' || return 1
  else ip link del zlo-probe; fi
  z 1 up -d --timeout 60 "$ZLC_DIR/mesh.yaml" &&
  z 1 ps -o json | jq -e '[.[] | select(.service == "web") | .node] | unique | length == 3'
}
check "3 nodes: distinct /24s of 10.240.0.0/16, a WireGuard device each (node ls says which)" mesh_up

all_pairs() {
  local i j ip
  for i in 1 2 3; do
    for j in 1 2 3; do
      [ "$i" = "$j" ] && continue
      ip=$(where "$j" | cut -d' ' -f2)
      eventually 75 in_replica "$i" "wget -qO- http://$ip:8080/ | grep -q 'from web-$j'" || { echo "web/$i -> web/$j by IP $ip failed"; return 1; }
      # The name follows the replica's report (its health, through a
      # heartbeat), which may come a moment after it answers by IP.
      eventually 75 in_replica "$i" "wget -qO- http://web-$j:8080/ | grep -q 'from web-$j'" || { echo "web/$i -> web-$j by name failed"; return 1; }
    done
  done
}
check "all pairs of replicas on different nodes reach each other, by IP and by name" all_pairs

# The receiving node sees the caller's own container address: traffic
# inside the cluster CIDR is not masqueraded.
source_kept() {
  local from to from_ip to_ip cap=$ZLC_DIR/src.txt
  from=$(where 1); to=$(where 2); from_ip=${from#* }; to_ip=${to#* }
  timeout 10 nsenter --net=/run/netns/zlo${to%% *} tcpdump -i zlayer0 -n -c 1 -l "tcp dst port 8080 and src host $from_ip" > "$cap" 2>/dev/null &
  local dump=$!
  # tcpdump may take a moment to start under load: ask until it has seen one (bounded).
  for _ in $(seq 1 20); do
    sleep 0.5
    in_replica 1 "wget -qO- http://$to_ip:8080/ >/dev/null"
    kill -0 $dump 2>/dev/null || break
  done
  wait $dump; cat "$cap"
  grep -q "IP $from_ip\.[0-9]* > $to_ip\.8080" "$cap"
}
check "a caller on another node is seen with its own address (no masquerade inside the cluster)" source_kept

# The ingress on every node routes by host to the healthy replicas of every
# node (one per node here), and a rolling update seen through one node's
# ingress fails no request: replicas on the other nodes are reported
# draining, and dropped from every node's routes, before they stop.
ingress_spec() {
  cat > "$ZLC_DIR/ingress.yaml" <<YAML
version: v1
deployment: ing
services:
  app:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: "$1" }
    endpoints:
      - { name: http, protocol: http, port: 8080, host: ing.test, expose: public }
    scale: { mode: fixed, replicas: 3 }
    update: { timeout: 60s }
    health: { start_grace: 3s, interval: 200ms, retries: 2, check: { type: http, url: "http://localhost:8080/health", expect_status: 200 } }
YAML
}
answers_from_all() { ip netns exec zlo$1 bash -c 'for k in $(seq 1 40); do curl -s -m 2 -H "Host: ing.test" http://127.0.0.1/; done' | sort -u | grep -c "^$2 from app-" | grep -qx 3; }
ingress_everywhere() {
  ingress_spec v1; z 1 up -d --timeout 60 "$ZLC_DIR/ingress.yaml" || return 1
  z 1 ps -o json | jq -e '[.[] | select(.service == "app") | .node] | unique | length == 3' || return 1
  for i in 1 2 3; do eventually 75 answers_from_all $i v1 || { echo "node $i does not reach all three replicas"; return 1; }; done
}
export -f ingress_spec answers_from_all
check "the ingress on every node routes a host to the healthy replicas of every node" ingress_everywhere
rollout_through_ingress() {
  ip netns exec zlo1 bash -c 'for i in $(seq 1 2000); do curl -s -o /dev/null -w "%{http_code}\n" -m 10 -H "Host: ing.test" http://127.0.0.1/; done' > "$ZLC_DIR/roll" &
  local loop=$!; sleep 0.5
  ingress_spec v2; z 1 up -d --timeout 120 "$ZLC_DIR/ingress.yaml"; local up=$?
  wait $loop; sort "$ZLC_DIR/roll" | uniq -c
  [ $up = 0 ] && [ "$(grep -vc '^200$' "$ZLC_DIR/roll")" = 0 ] && eventually 75 answers_from_all 1 v2
}
check "a rolling update on 3 nodes through one node's ingress fails no request" rollout_through_ingress
z 1 down ing >/dev/null 2>&1

# L4 ports on every node: a udp and a tcp endpoint of 3 replicas (one per
# node) answer on each node's published port, from the replicas of every
# node (each socat or curl is a new flow or connection, spread round robin).
cat > "$ZLC_DIR/l4.yaml" <<'YAML'
version: v1
deployment: l4
services:
  echo:
    image: { name: demo:latest }
    env: { PORT: "8080", UDP_PORT: "5300", MESSAGE: "l4" }
    endpoints:
      - { name: dgram, protocol: udp, port: 5300, expose: public }
      - { name: stream, protocol: tcp, port: 8080, host_port: 9080, expose: public }
    scale: { mode: fixed, replicas: 3 }
    health: { start_grace: 3s, interval: 200ms, retries: 2, check: { type: http, url: "http://localhost:8080/health", expect_status: 200 } }
YAML
udp_from_all() { ip netns exec zlo$1 bash -c 'for k in $(seq 1 40); do echo ping | socat -T 2 - UDP:127.0.0.1:5300; echo; done' | grep -o "^l4 from echo-[0-9]*: ping" | sort -u | wc -l | grep -qx 3; }
tcp_from_all() { ip netns exec zlo$1 bash -c 'for k in $(seq 1 40); do curl -s -m 2 http://127.0.0.1:9080/; echo; done' | grep -o "^l4 from echo-[0-9]*" | sort -u | wc -l | grep -qx 3; }
l4_everywhere() {
  z 1 up -d --timeout 60 "$ZLC_DIR/l4.yaml" || return 1
  z 1 ps -o json | jq -e '[.[] | select(.service == "echo") | .node] | unique | length == 3' || return 1
  for i in 1 2 3; do
    eventually 75 udp_from_all $i || { echo "node $i: udp does not reach all three replicas"; return 1; }
    eventually 75 tcp_from_all $i || { echo "node $i: tcp does not reach all three replicas"; return 1; }
  done
}
export -f udp_from_all tcp_from_all
check "udp and tcp ports on every node reach the replicas of every node" l4_everywhere
z 1 down l4 >/dev/null 2>&1


# DNS follows health on every node: sick/1 runs but has never passed its
# check, so no node resolves it; once it passes every node does; once it
# fails (and restarts without its file) every node drops it again.
# Another deployment's names are asked in full (the search domain is the
# asker's own deployment).
resolves_sick() { in_replica "$1" "nslookup sick-1.probe.zlayer | grep -q '^Address: 10.240'"; }
dns_healthy_only() {
  for n in 1 2 3; do
    eventually 75 bash -c "in_replica $n 'nslookup web' | grep -c '^Address: 10.240' | grep -qx 3" || { echo "web/$n does not see 3 replicas"; return 1; }
  done
  # up -d waits for health that never comes: a 1 s wait, then on.
  z 1 up -d --timeout 1 "$ZLC_DIR/sick.yaml"
  eventually 100 bash -c '[ -n "$(at sick 1)" ]' || { echo "sick/1 is not running"; return 1; }
  for n in 1 2 3; do
    ! resolves_sick "$n" && in_replica "$n" "! nslookup sick.probe >/dev/null 2>&1" || { echo "web/$n resolves sick before it ever passed"; return 1; }
  done
  eventually 100 in_svc sick 1 "touch /tmp/ok" || return 1
  for n in 1 2 3; do eventually 100 resolves_sick "$n" || { echo "web/$n does not resolve the healthy sick-1"; return 1; }; done
  in_svc sick 1 "rm /tmp/ok" || return 1
  for n in 1 2 3; do eventually 100 bash -c "! resolves_sick $n" || { echo "web/$n still resolves sick-1 after it failed"; return 1; }; done
  z 1 down probe >/dev/null
}
export -f resolves_sick
check "DNS on every node answers with the healthy replicas of every node only" dns_healthy_only

# A marker sent between containers never crosses the underlay in the
# clear; the same marker sent in the clear on the underlay is seen (the
# capture works), and WireGuard's UDP is.
underlay_encrypted() {
  local pcap=$ZLC_DIR/underlay.pcap to_ip
  to_ip=$(where 2 | cut -d' ' -f2)
  ip netns exec zlohub tcpdump -i br0 -w "$pcap" -U 2>/dev/null &
  local dump=$!
  sleep 1
  in_replica 1 "wget -qO- http://$to_ip:8080/OVERLAY-SECRET-MARKER-7731 >/dev/null 2>&1; true"
  nsenter --net=/run/netns/zlo1 bash -c 'echo UNDERLAY-CLEAR-MARKER-7731 > /dev/udp/10.77.0.2/9999' 2>/dev/null
  sleep 1; kill $dump; wait $dump 2>/dev/null
  local secret clear wg
  secret=$(grep -ac OVERLAY-SECRET-MARKER-7731 "$pcap")
  clear=$(grep -ac UNDERLAY-CLEAR-MARKER-7731 "$pcap")
  wg=$(tcpdump -r "$pcap" -n 'udp port 51820' 2>/dev/null | wc -l)
  echo "secret marker seen $secret times, clear marker $clear, WireGuard packets $wg"
  [ "$secret" -eq 0 ] && [ "$clear" -ge 1 ] && [ "$wg" -ge 2 ]
}
check "the underlay carries only WireGuard: a plaintext marker between containers is never on the bridge" underlay_encrypted

# Traffic to each peer first: an idle session expires after a few minutes
# (its handshake and counters go with it), and the checks before may have
# sent n1 nothing lately.
status_shows_peers() {
  local g
  for g in $(z 1 node ls -o json | jq -r '.[] | select(.name != "n1") | .subnet | sub("0/24$"; "1")'); do
    # A connection to a closed port of the peer's gateway: its reset
    # comes back through the tunnel.
    nsenter --net=/run/netns/zlo1 curl -s -m 3 "http://$g:1/" >/dev/null
  done
  eventually 75 bash -c "$NC z 1 overlay status -o json | jq -e '.peers | length == 2 and all(.[]; .handshake_secs_ago != null and .rx_bytes > 0)'"
  z 1 overlay status
  z 1 overlay status -o json | jq -e '
    (.device == "userspace" or .device == "kernel") and (.peers | length) == 2 and
    all(.peers[]; (.name | test("^n[23]$")) and .handshake_secs_ago != null and .rx_bytes > 0 and .path == "direct")'
}
check "overlay status shows each peer: endpoint, last handshake, bytes, path" status_shows_peers

# network_policy: only `client` (on any node) reaches `api`; `other` and
# the web replicas of another deployment are refused. Letting `other` in
# restarts nothing.
cat > "$ZLC_DIR/policy.yaml" <<'YAML'
version: v1
deployment: pol
services:
  api:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: "api" }
    endpoints:
      - { name: http, protocol: http, port: 8080 }
    scale: { mode: fixed, replicas: 2 }
    network_policy: { ingress_from: [client] }
  client:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    scale: { mode: fixed, replicas: 3 }
  other:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    scale: { mode: fixed, replicas: 3 }
YAML
reaches() { in_svc "$1" "$2" "timeout 3 wget -qO- http://$3:8080/ | grep -q '^api from'"; }
export -f reaches
policy_enforced() {
  z 1 up -d --timeout 60 "$ZLC_DIR/policy.yaml" || return 1
  local a ip k
  for a in 1 2; do
    ip=$(at api "$a" | cut -d' ' -f2)
    for k in 1 2 3; do
      eventually 75 reaches client "$k" "$ip" || { echo "client/$k cannot reach api/$a ($ip)"; return 1; }
      ! reaches other "$k" "$ip" || { echo "other/$k reached api/$a ($ip)"; return 1; }
    done
    ! in_replica 1 "timeout 3 wget -qO- http://$ip:8080/ >/dev/null" || { echo "web/1 of another deployment reached api/$a"; return 1; }
  done
  local before; before=$(z 1 ps -o json | jq -c '[.[] | select(.deployment == "pol") | .container_id] | sort')
  sed 's/ingress_from: \[client\]/ingress_from: [client, other]/' "$ZLC_DIR/policy.yaml" > "$ZLC_DIR/policy2.yaml"
  local out; out=$(z 1 up -d --timeout 60 "$ZLC_DIR/policy2.yaml") || return 1
  echo "$out"; echo "$out" | grep -q 'applied (changed)' || return 1
  ip=$(at api 1 | cut -d' ' -f2)
  for k in 1 2 3; do eventually 75 reaches other "$k" "$ip" || { echo "other/$k still refused after the change"; return 1; }; done
  [ "$(z 1 ps -o json | jq -c '[.[] | select(.deployment == "pol") | .container_id] | sort')" = "$before" ] || { echo "changing the policy restarted a container"; return 1; }
  z 1 down pol >/dev/null
}
check "network_policy: only the listed services reach a service, on every node; changing it restarts nothing" policy_enforced

# A stock peer: `overlay peer add` prints a wg-quick config; Debian's
# wireguard-go, configured with it by `wg` in a fifth namespace on the
# underlay, reaches a replica on every node by IP.
stock_peer() {
  local conf=$ZLC_DIR/zlopeer0.conf
  (umask 077; z 1 overlay peer add laptop > "$conf") || return 1
  cat "$conf" | grep -v PrivateKey
  [ "$(grep -c '^\[Peer\]' "$conf")" -eq 3 ] || return 1
  ip netns add zlo4 && ip link add zlov4 type veth peer name eth0 netns zlo4 &&
  ip link set zlov4 netns zlohub && ip -n zlohub link set zlov4 master br0 up &&
  ip -n zlo4 addr add 10.77.0.4/24 dev eth0 && ip -n zlo4 link set eth0 up || return 1
  ip netns exec zlo4 env WG_PROCESS_FOREGROUND=1 wireguard-go zlopeer0 >"$ZLC_DIR/wireguard-go.log" 2>&1 &
  eventually 75 test -S /var/run/wireguard/zlopeer0.sock || return 1
  ip netns exec zlo4 wg setconf zlopeer0 <(wg-quick strip "$conf") &&
  ip -n zlo4 addr add "$(sed -n 's/^Address = //p' "$conf")" dev zlopeer0 &&
  ip -n zlo4 link set zlopeer0 up && ip -n zlo4 route add 10.240.0.0/16 dev zlopeer0 || return 1
  local n ip
  for n in 1 2 3; do
    ip=$(where "$n" | cut -d' ' -f2)
    eventually 75 bash -c "ip netns exec zlo4 curl -sf -m 2 http://$ip:8080/ | grep -q 'from web-$n'" || { echo "the stock peer cannot reach web/$n ($ip)"; return 1; }
  done
  z 1 overlay status | grep -q 'laptop (peer)'
}
check "a stock peer: overlay peer add prints a wg-quick config; wireguard-go with it reaches every node's replicas" stock_peer

# A hostile peer name or key through the real CLI: refused with the rule,
# nothing recorded. (A name with a newline would have put its own lines,
# such as PostUp, into every printed wg-quick config.)
peer_refused() { # $1: expected words, rest: the peer add arguments
  local want=$1 out; shift
  out=$(z 1 overlay peer add "$@" 2>&1) && { echo "accepted: $*"; return 1; }
  echo "$out"; echo "$out" | grep -qF "$want"
}
bad_peers() {
  peer_refused "is not a peer name" $'evil\nPostUp = touch /tmp/pwned' &&
    peer_refused "is not a peer name" "Laptop_2" &&
    peer_refused "is not a WireGuard public key" tablet --public-key "not-a-key" || return 1
  ! z 1 overlay status | grep -qiE "evil|laptop_2|tablet"
}
check "overlay peer add refuses a hostile name or key and records nothing" bad_peers

# logs and exec of a replica on another node: from n1 (a manager) and from a
# remote CLI with an API token, forwarded over mTLS to the node running it.
# exec's stdout, stderr and exit code come back; a log line written into the
# replica's output shows in `logs`, in `logs -f` as it is written, and every
# node's replicas show (prefixed) in `logs SERVICE`.
elsewhere_replica() { local n w; for n in 1 2 3; do w=$(where "$n"); [ -n "$w" ] && [ "${w%% *}" != 1 ] && { echo "$n"; return; }; done; return 1; }
across_nodes() {
  local n out code t
  n=$(elsewhere_replica) || { echo "no web replica off n1"; return 1; }
  echo "web/$n runs on n$(where "$n" | cut -d' ' -f1)"
  out=$(z 1 exec "web/$n" -- /bin/sh -c 'echo "out from $(hostname)"; echo to-stderr >&2; echo across-marker > /proc/1/fd/1; exit 7' 2>&1); code=$?
  echo "exit $code: $out"
  [ "$code" = 7 ] && echo "$out" | grep -q "^out from" && echo "$out" | grep -q "^to-stderr" || return 1
  z 1 logs "web/$n" | grep -q "^across-marker$" || return 1
  z 1 logs web | grep -o '^web/[0-9] | ' | sort -u | tr -d '\n' | grep -qx "web/1 | web/2 | web/3 | " || { z 1 logs web; return 1; }
  timeout 20 "$NC" z 1 logs -f "web/$n" > "$ZLC_DIR/follow.out" 2>&1 &
  local follower=$!
  eventually 100 grep -q "^across-marker$" "$ZLC_DIR/follow.out" || return 1
  in_replica "$n" "echo followed-marker > /proc/1/fd/1" || return 1
  eventually 100 grep -q "^followed-marker$" "$ZLC_DIR/follow.out"; local followed=$?
  kill "$follower" 2>/dev/null; wait "$follower" 2>/dev/null
  [ "$followed" = 0 ] || { echo "logs -f missed a new line"; cat "$ZLC_DIR/follow.out"; return 1; }
  t=$(z 1 token create --api --ttl 10m) || return 1
  out=$(nsenter --net=/run/netns/zlo3 "$ZLAYER" --data-dir "$ZLC_DIR/none" --api-token "$t" --remote 10.77.0.1 \
    exec "web/$n" -- /bin/sh -c 'echo remote-exec-ok; exit 3'); code=$?
  echo "remote: exit $code: $out"
  [ "$code" = 3 ] && [ "$out" = remote-exec-ok ] &&
    nsenter --net=/run/netns/zlo3 "$ZLAYER" --data-dir "$ZLC_DIR/none" --api-token "$t" --remote 10.77.0.1 logs "web/$n" | grep -q "^followed-marker$"
}
check "logs and exec of a replica on another node, from a manager and from a remote CLI with an API token" across_nodes

# Link health: every node probes the others' links over mTLS; overlay status
# shows each node peer's round trip and bandwidth. With n2's underlay egress
# cut to 20 Mbit/s (tc), n2's bandwidth health (median of its links) drops
# and shows in node ls, where the scheduler reads it.
bandwidth_of() { z 1 node ls -o json | jq -r ".[] | select(.name == \"$1\") | .health.bandwidth"; }
link_health() {
  eventually 100 bash -c "$NC z 1 overlay status -o json | jq -e '[.peers[] | select(.name == \"n2\" or .name == \"n3\") | select(.rtt_ms > 0 and .mbit_s > 0)] | length == 2'" || { z 1 overlay status; return 1; }
  z 1 overlay status
  ip netns exec zlo2 tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 400ms || return 1
  eventually 150 bash -c "[ \"\$(bandwidth_of n2)\" = 0 ] || [ \"\$(bandwidth_of n2)\" = 0.0 ]"; local dropped=$?
  echo "bandwidth health with n2 throttled: n1 $(bandwidth_of n1), n2 $(bandwidth_of n2)"
  z 2 overlay status
  ip netns exec zlo2 tc qdisc del dev eth0 root
  [ "$dropped" = 0 ] && awk -v a="$(bandwidth_of n1)" 'BEGIN { exit !(a > 0) }'
}
export -f bandwidth_of
check "link health: each peer's round trip and bandwidth in overlay status; a throttled node's bandwidth score drops" link_health

# kill -9 of n2: n1 and n3 keep answering; on restart its device and routes
# are rebuilt and traffic flows again.
kill_and_restart() {
  local to_ip; to_ip=$(where 2 | cut -d' ' -f2)
  $NC kill 2
  timeout 10 $NC z 1 ps >/dev/null || { echo "n1 stalled with n2 dead"; return 1; }
  timeout 10 $NC z 3 overlay status >/dev/null || { echo "n3 stalled with n2 dead"; return 1; }
  $NC start 2 || return 1
  ip -n zlo2 route | grep -q "10.240.0.0/24 dev zlwg" || eventually 100 bash -c "ip -n zlo2 route | grep -q '10.240.0.0/24 dev zlwg'" || return 1
  eventually 100 in_replica 1 "wget -qO- http://$to_ip:8080/ | grep -q 'from web-2'"
}
check "kill -9 of a node: its tunnel is rebuilt on restart and no other node stalls" kill_and_restart

node_leaves() {
  local gone; gone=$(z 1 node ls -o json | jq -r '.[] | select(.name == "n3") | .subnet')
  z 1 node rm n3 || return 1
  $NC kill 3
  for n in 1 2; do
    eventually 100 bash -c "! ip -n zlo$n route | grep -q '^$gone '" || { echo "n$n still routes $gone"; return 1; }
    eventually 100 bash -c "$NC z $n overlay status -o json | jq -e '([.peers[] | select(.name | endswith(\"(peer)\") | not)] | length) == 1 and all(.peers[]; .name != \"n3\")'" || return 1
  done
}
check "a removed node's peer entry and route go from every other node" node_leaves

# Two nodes behind NAT (scripts/netns-cluster join-nat: each behind a
# router namespace that masquerades and lets nothing in). Each joins, runs a
# replica and is reached from the others' containers: the leader reaches it
# over the mesh once its keepalives open the path, and learns its endpoint
# (the router's address). The two reach each other through a relay (a
# reachable node), shown as the path in overlay status. Nothing on the
# bridge can open a connection to a node behind NAT. After a kill -9 and
# restart, a node behind NAT is reached again.
cat > "$ZLC_DIR/nat.yaml" <<'YAML'
version: v1
deployment: nat
services:
  a:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: "a" }
    endpoints:
      - { name: http, protocol: http, port: 8080 }
    node_selector: { labels: { spot: n6 } }
  b:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: "b" }
    endpoints:
      - { name: http, protocol: http, port: 8080 }
    node_selector: { labels: { spot: n7 } }
YAML
behind_nat() {
  $NC join-nat 6 --label spot=n6 && $NC join-nat 7 --label spot=n7 || return 1
  z 1 node ls
  z 1 node ls -o json | jq -e '[.[] | select(.behind_nat)] | map(.name) | sort == ["n6", "n7"]' >/dev/null || return 1
  ! ip netns exec zlo1 timeout 3 bash -c 'echo > /dev/tcp/192.168.6.2/7443' 2>/dev/null || { echo "n1 opened a connection to n6 behind NAT"; return 1; }
  z 1 up -d --timeout 120 "$ZLC_DIR/nat.yaml" || return 1
  z 1 ps
  local a b web
  a=$(at a 1); b=$(at b 1); web=$(where "$(elsewhere_replica || echo 1)")
  [ "${a%% *}" = 6 ] && [ "${b%% *}" = 7 ] || { echo "a on n${a%% *}, b on n${b%% *}"; return 1; }
  eventually 100 in_replica "$(elsewhere_replica || echo 1)" "wget -qO- http://${a#* }:8080/ | grep -q '^a from'" || { echo "web on n${web%% *} cannot reach a on n6"; return 1; }
  in_svc a 1 "wget -qO- http://${web#* }:8080/ | grep -q '^mesh from'" || { echo "a on n6 cannot reach web on n${web%% *}"; return 1; }
  eventually 100 in_svc a 1 "wget -qO- http://${b#* }:8080/ | grep -q '^b from'" || { echo "a on n6 cannot reach b on n7 (relay)"; return 1; }
  in_svc b 1 "wget -qO- http://a:8080/ | grep -q '^a from'" || { echo "b on n7 cannot reach a by name"; return 1; }
  z 6 overlay status
  z 6 overlay status -o json | jq -e '([.peers[] | select(.name == "n7")][0].path | startswith("relay via n")) and
    ([.peers[] | select(.name == "n1")][0].path | startswith("direct"))' >/dev/null || return 1
  z 1 overlay status
  z 1 overlay status -o json | jq -e '[.peers[] | select(.name == "n6")][0].endpoint | startswith("10.77.0.106:")' >/dev/null || { echo "n1 did not learn n6's endpoint behind its router"; return 1; }
  # The control plane reaches it through the mesh too: exec forwarded from n1.
  [ "$(z 1 exec a/1 -- /bin/echo through-nat)" = through-nat ] || return 1
  # kill -9 and restart behind NAT: its mesh comes back from node.json
  # before its control plane, and both paths work again.
  $NC kill 6 && $NC start 6 || return 1
  eventually 100 in_replica "$(elsewhere_replica || echo 1)" "wget -qO- http://${a#* }:8080/ | grep -q '^a from'" || { echo "a on n6 not reached after its restart"; return 1; }
  eventually 100 bash -c "[ \"\$($NC z 1 exec a/1 -- /bin/echo again)\" = again ]"
}
export -f elsewhere_replica
check "nodes behind NAT join and serve, are reached through their keepalives, reach each other through a relay (overlay status shows the path), and come back after kill -9" behind_nat

echo "e2e-overlay: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
