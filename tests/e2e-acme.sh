#!/usr/bin/env bash
# ACME for real on a 3-node netns cluster (scripts/netns-cluster, prefix zla)
# against Debian's pebble, which runs with pebble-challtestsrv (its DNS) in
# the cluster's hub namespace at 10.77.0.250. The DNS answers every name
# with node 3, so the CA's validation reaches a node that does not lead:
# the answer only gets there through the cluster state. Checks: HTTP-01
# issuance, the certificate served by every node and verified by curl
# against pebble's root, one node ordering, renewal before expiry (pebble
# issues 60-second certificates), renewal by a new leader after the old is
# killed, TLS-ALPN-01 after a restart with --acme-challenge tls-alpn-01, a
# worker (node 4, no CA key) serving the ACME certificate and a dev
# certificate it got from the leader over mTLS, one ACME account for the
# cluster (made once, reused by later leaders), no issued private key on any
# node's disk in the clear, and no private key at all (a TLS-ALPN-01
# challenge's included) in any Raft store. Prints PASS/FAIL
# per check, then "e2e-acme: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib/netns-checks.sh zla
HUB="ip netns exec zlahub"
CA=10.77.0.250
P=$ZLC_DIR/pebble
cleanup() {
  pkill -f "pebble -config $P/" 2>/dev/null; pkill -f "pebble-challtestsrv -defaultIPv4 .* -management 127.0.0.1:18055" 2>/dev/null
  $NC down >/dev/null 2>&1; rm -rf "$ZLC_DIR"
}
trap cleanup EXIT
export -f z eventually; export NC HUB P

# The CA's own HTTPS (its ACME API) needs a certificate a client can verify:
# a root and a leaf for 10.77.0.250, made here.
mkdir -p "$P"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=zlayer-test-acme-api-root \
  -keyout "$P/api-root.key" -out "$P/api-root.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble -keyout "$P/api.key" -out "$P/api.csr" 2>/dev/null
openssl x509 -req -in "$P/api.csr" -CA "$P/api-root.pem" -CAkey "$P/api-root.key" -CAcreateserial -days 2 \
  -extfile <(printf 'subjectAltName=IP:%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' $CA) \
  -out "$P/api.pem" 2>/dev/null
cat > "$P/pebble.json" <<JSON
{ "pebble": { "listenAddress": "$CA:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "$P/api.pem", "privateKey": "$P/api.key", "httpPort": 80, "tlsPort": 443,
  "ocspResponderURL": "", "externalAccountBindingRequired": false, "certificateValidityPeriod": 60 } }
JSON

export ZLC_NODE_ARGS="--acme-directory https://$CA:14000/dir --acme-ca-cert $P/api-root.pem --acme-email ops@acme.test"
$NC up 3 || { echo "cluster did not come up"; exit 1; }
ZLC_JOIN_ROLE=worker $NC join 4 >/dev/null || { echo "the worker did not join"; exit 1; }
ip -n zlahub addr add $CA/24 dev br0
ip -n zlahub link set lo up
$HUB setsid pebble-challtestsrv -defaultIPv4 10.77.0.3 -defaultIPv6 "" -dns01 127.0.0.1:8053 -http01 "" -https01 "" \
  -tlsalpn01 "" -management 127.0.0.1:18055 </dev/null >"$P/challtestsrv.log" 2>&1 &
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 $HUB setsid pebble -config "$P/pebble.json" -dnsserver 127.0.0.1:8053 \
  </dev/null >"$P/pebble.log" 2>&1 &
eventually 50 $HUB curl -sf -m 1 --cacert "$P/api-root.pem" https://$CA:14000/dir >/dev/null \
  || { echo "pebble did not start"; cat "$P/pebble.log"; exit 1; }
# The root pebble issues under (made at its start).
$HUB curl -s --cacert "$P/api-root.pem" https://127.0.0.1:15000/roots/0 -k > "$P/issuer-root.pem"

spec() { # spec HOST...: one replica whose https endpoints ask for ACME certificates
  {
    echo "version: v1"; echo "deployment: shop"; echo "services:"; echo "  web:"
    echo "    image: { name: demo:latest, pull_policy: never }"
    echo "    env: { PORT: \"8080\", MESSAGE: \"acme shop\" }"
    echo "    endpoints:"
    local i=0
    for h in "$@"; do i=$((i+1)); echo "      - { name: tls$i, protocol: https, port: 8080, host: $h, expose: public, tls: { acme: true } }"; done
    echo "      - { name: dev, protocol: https, port: 8080, host: dev.acme.test, expose: public }"
  } > "$ZLC_DIR/shop.yaml"
}
# served NODE HOST: what NODE's ingress answers for HOST, verified against pebble's root.
served() { $HUB curl -sS -m 5 --cacert "$P/issuer-root.pem" --resolve "$2:443:10.77.0.$1" "https://$2/"; }
# serial NODE HOST: the serial of the certificate NODE serves for HOST,
# when it verifies against pebble's root (dates and name included).
serial() {
  $HUB openssl s_client -connect "10.77.0.$1:443" -servername "$2" -CAfile "$P/issuer-root.pem" \
    -verify_return_error -verify_hostname "$2" </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}
export -f served serial

spec shop.acme.test
z 1 up -d --timeout 60 "$ZLC_DIR/shop.yaml" >/dev/null

every_node_serves() { for i in 1 2 3 4; do [ "$(served $i "$1")" = "acme shop from web-1" ] || return 1; done; }
export -f every_node_serves
check "HTTP-01: a certificate from pebble, served by every node and verified by curl" bash -c '
  eventually 150 every_node_serves shop.acme.test || { tail -5 $ZLC_DIR/n1/node.log; exit 1; }
  for i in 1 2 3 4; do serial $i shop.acme.test; done'
check "one node ordered it (the leader), the CA validated through node 3" bash -c '
  n=$(grep -l "certificate for shop.acme.test obtained" $ZLC_DIR/n*/node.log | wc -l); echo "nodes that ordered: $n"; [ "$n" = 1 ]'

# Node 4 is a worker: it holds no CA key, so it can neither open a sealed
# key nor sign a dev certificate. It asked the leader for both (above, it
# served the ACME certificate); its dev certificate verifies under the
# ingress CA, and its key was made on node 4 (only there on disk).
worker_dev_cert() {
  z 1 ca export > $ZLC_DIR/ingress-ca.pem || return 1
  eventually 100 $HUB curl -sSf -m 5 --cacert $ZLC_DIR/ingress-ca.pem --resolve dev.acme.test:443:10.77.0.4 https://dev.acme.test/ || return 1
  ls $ZLC_DIR/n4/ingress/dev/ | grep "^dev.acme.test"
}
export -f worker_dev_cert
check "a worker serves the ACME certificate and a dev certificate the leader signed over mTLS" worker_dev_cert

# A handshake offering acme-tls/1 (what a CA's TLS-ALPN-01 validation
# sends) gets a pending challenge's certificate or none, never the host's
# real one: else anyone could pass such a handshake off as the host's.
alpn_gets_no_real_cert() {
  $HUB openssl s_client -connect 10.77.0.1:443 -servername shop.acme.test </dev/null 2>&1 | grep -q "BEGIN CERTIFICATE" \
    || { echo "a plain handshake got no certificate: the check below would prove nothing"; return 1; }
  local out; out=$($HUB openssl s_client -connect 10.77.0.1:443 -servername shop.acme.test -alpn acme-tls/1 </dev/null 2>&1)
  echo "$out" | grep -E "alert|no peer certificate" | head -3
  ! echo "$out" | grep -q "BEGIN CERTIFICATE"
}
export -f alpn_gets_no_real_cert
check "an acme-tls/1 handshake with no challenge pending gets no certificate" alpn_gets_no_real_cert

# Renewed with a third of its life left: node NODE serves a new serial, and
# the certificate it served verified at every look (dates included). Only
# the handshake is looked at: while a killed node's replica moves, requests
# through the ingress may fail, and that is not what this checks.
renewed_on() { # renewed_on NODE: a new serial within 120 s, every answer valid
  local first now; first=$(serial "$1" shop.acme.test); echo "first $first"; [ -n "$first" ] || return 1
  for _ in $(seq 1 120); do
    now=$(serial "$1" shop.acme.test); [ -n "$now" ] || { echo "a handshake did not verify"; return 1; }
    [ "$now" != "$first" ] && { echo "then $now"; return 0; }
    sleep 1
  done; return 1
}
export -f renewed_on
check "renewed before expiry, and the renewal reaches every node" renewed_on 3

check "the leader killed: the new leader renews" bash -c '
  l=$(z 1 node ls -o json | jq -r ".[] | select(.role == \"leader\") | .name" | sed "s/^n//"); echo "leader n$l"
  [ -n "$l" ] || exit 1
  $NC kill $l
  o=$((l % 3 + 1)); renewed_on $o || { date -u +%T; grep "zlayer_node::acme" $ZLC_DIR/n*/node.log | tail -12; exit 1; }
  grep -l "certificate for shop.acme.test obtained" $ZLC_DIR/n*/node.log'
# Back to all four for what follows.
for i in 1 2 3 4; do z $i ps >/dev/null 2>&1 || $NC start $i >/dev/null; done

# TLS-ALPN-01: every node restarted with the other challenge; a new host.
export ZLC_NODE_ARGS="$ZLC_NODE_ARGS --acme-challenge tls-alpn-01"
for i in 1 2 3 4; do $NC kill $i; $NC start $i >/dev/null; done
spec shop.acme.test alpn.acme.test
check "TLS-ALPN-01: a certificate for a second host, served by every node" bash -c '
  z 1 up -d --timeout 60 $ZLC_DIR/shop.yaml >/dev/null || exit 1
  eventually 150 every_node_serves alpn.acme.test || { grep -h acme $ZLC_DIR/n*/node.log | tail -5; exit 1; }
  grep -h "ordering a certificate for alpn.acme.test" $ZLC_DIR/n*/node.log'

# Every leader orders as the account the first one made and sealed in the
# state: a CA limits new accounts (Let's Encrypt: 10 per address in 3 hours),
# and a leader change or a restart must not spend them.
one_account() {
  local at_ca used
  at_ca=$(grep -o "There are now [0-9]* accounts in memory" "$P/pebble.log" | tail -1 | grep -o "[0-9][0-9]*")
  used=$(grep -h "ACME: using the cluster's account at" $ZLC_DIR/n*/node.log | wc -l)
  echo "accounts the CA holds: ${at_ca:-none}; the stored one taken up by a later leader: $used times"
  [ "$at_ca" = 1 ] && [ "$used" -ge 1 ]
}
export -f one_account
check "one ACME account for the cluster, made once, reused after the leader was killed and every node restarted" one_account

# No issued key in the clear: the key of each served certificate is found in
# no file of any node (the Raft log and snapshots included). The scan must
# find the keys that are kept in the clear (each node's own key), or it
# proves nothing.
keys_sealed() {
  python3 tests/lib/private_keys.py $ZLC_DIR/n1 $ZLC_DIR/n2 $ZLC_DIR/n3 $ZLC_DIR/n4 > $ZLC_DIR/keys.txt
  grep -q "/cluster/node.key$" $ZLC_DIR/keys.txt || { echo "the scan found no key at all"; return 1; }
  for h in shop.acme.test alpn.acme.test; do
    local d; d=$($HUB openssl s_client -connect 10.77.0.1:443 -servername $h </dev/null 2>/dev/null \
      | openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d" " -f1)
    echo "$h public key $d"
    grep "^$d " $ZLC_DIR/keys.txt && { echo "the private key of $h is stored in the clear"; return 1; }
  done
  # The Raft stores (log, state, snapshot file) hold no key at all: not a
  # TLS-ALPN-01 challenge's either (each node signs its own over the digest).
  grep "/cluster/raft/" $ZLC_DIR/keys.txt && { echo "a private key is in a Raft store"; return 1; }
  echo "$(wc -l < $ZLC_DIR/keys.txt) keys on disk, none of them an issued certificate's"
}
export -f keys_sealed; export ZLC_DIR
check "no issued private key is stored in the clear on any node" keys_sealed

echo "e2e-acme: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
