#!/usr/bin/env bash
# End-to-end checks of the ingress on one node with real containers and real
# clients: curl over HTTP/1.1, HTTP/2 (ALPN) and h2c, openssl s_client for
# ALPN and SNI, a WebSocket client, h2load, sslscan, promtool; routes by host
# and path, 404 and 503, X-Forwarded-*, limits, a hot route change that rolls
# nothing, a replica killed under load, a rollout with no failed request, and
# the floods (slowloris, malformed requests, an h2 rapid-reset burst, idle
# connections). Listens on 80 and 443: no other zlayer node may run meanwhile.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
export ZLAYER_DATA_DIR=$(mktemp -d /tmp/zlayer-e2e-proxy.XXXX)
T=$(mktemp -d /tmp/zlayer-proxy.XXXX)
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >$T/out 2>&1; then ok "$name"; [ -n "${CHECK_SHOW:-}" ] && sed 's/^/    /' $T/out | tail -5; else ko "$name"; sed 's/^/    /' $T/out | tail -20; fi; }
cleanup() {
  "$Z" down proxy >/dev/null 2>&1; "$Z" down sick >/dev/null 2>&1; "$Z" down tlssec >/dev/null 2>&1
  "$Z" node stop >/dev/null 2>&1; sleep 0.3
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR" 2>/dev/null
  rm -rf "$ZLAYER_DATA_DIR" "$T"
}
trap cleanup EXIT
export Z T

"$Z" image import images/out/busybox.tar >/dev/null && "$Z" image import images/out/demo.tar >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=files.proxy.test \
  -addext subjectAltName=DNS:files.proxy.test -keyout $T/files.key -out $T/files.crt 2>/dev/null
mkdir -p $T/certs && mv $T/files.crt $T/files.key $T/certs/
setsid "$Z" node start --allow-host-path $T/certs --access-log --ingress-max-body 1Ki --ingress-max-headers 50 --ingress-header-timeout 2s \
  --ingress-max-connections 2000 </dev/null >$T/node.log 2>&1 &
for _ in $(seq 1 100); do "$Z" ps >/dev/null 2>&1 && break; sleep 0.1; done

spec() { # spec WEB_HOST [MESSAGE]: the test deployment
  cat > $T/proxy.yaml <<YAML
version: v1
deployment: proxy
services:
  web:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "8080", MESSAGE: "${2:-proxyweb}" }
    endpoints:
      - { name: http, protocol: http, port: 8080, host: $1, expose: public }
      - { name: tls, protocol: https, port: 8080, host: $1, expose: public }
      - { name: grpc, protocol: http, port: 8080, host: h2c.proxy.test, upstream: h2c, expose: public }
      - { name: files, protocol: https, port: 8080, host: files.proxy.test, expose: public, tls: { cert: $T/certs/files.crt, key: $T/certs/files.key } }
      - { name: any, protocol: http, port: 8080, host: "*.wild.test", expose: public, balance: round_robin }
    scale: { mode: fixed, replicas: 3 }
    update: { timeout: 60s }
    health: { start_grace: 1s, interval: 1s, timeout: 1s, retries: 2, check: { type: http, url: "http://localhost:8080/health", expect_status: 200 } }
  api:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "9000" }
    endpoints:
      - { name: http, protocol: http, port: 9000, host: $1, path: /api, expose: public }
YAML
}
# Never healthy: its route has no replica to send to.
cat > $T/sick.yaml <<YAML
version: v1
deployment: sick
services:
  sick:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "8080", FAIL_HEALTH_AFTER: "0" }
    endpoints:
      - { name: http, protocol: http, port: 8080, host: sick.proxy.test, expose: public }
    health: { start_grace: 1s, interval: 1s, timeout: 1s, retries: 1, check: { type: http, url: "http://localhost:8080/health", expect_status: 200 } }
YAML
export -f spec
spec web.proxy.test
"$Z" up -d --timeout 120 $T/proxy.yaml >$T/up.log 2>&1 || { cat $T/up.log; }
"$Z" up -d --timeout 1 $T/sick.yaml >/dev/null 2>&1
"$Z" ca export > $T/ca.pem
CURL="curl -sS -m 10 --cacert $T/ca.pem --resolve web.proxy.test:443:127.0.0.1 --resolve files.proxy.test:443:127.0.0.1"
export CURL
# Replicas report healthy a moment before the route table has them all.
for _ in $(seq 1 100); do [ "$(curl -s -m 2 -H 'Host: web.proxy.test' http://127.0.0.1/)" = "proxyweb from web-1" ] && break; sleep 0.1; done
for _ in $(seq 1 100); do $CURL https://web.proxy.test/ >/dev/null 2>&1 && break; sleep 0.1; done

check "HTTP/1.1 by host reaches every replica" bash -c '
  for i in $(seq 1 30); do curl -s --http1.1 -H "Host: web.proxy.test" http://127.0.0.1/; done | sort -u | tee /dev/stderr | wc -l | grep -qx 3'
check "the longest path prefix picks the api service" bash -c '
  curl -s -H "Host: web.proxy.test" http://127.0.0.1/api/x | grep -qx "not found on api-1" &&
  curl -s -H "Host: web.proxy.test" http://127.0.0.1/apix | grep -q "on web-"'
check "a wildcard host routes" bash -c 'curl -s -H "Host: a.wild.test" http://127.0.0.1/ | grep -q "proxyweb from web-"'
check "an unknown host gets 404" bash -c '[ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: nope.test" http://127.0.0.1/)" = 404 ]'
check "a route with no healthy replica gets 503 with Retry-After" bash -c '
  curl -s -i -H "Host: sick.proxy.test" http://127.0.0.1/ | tee /dev/stderr | grep -q "^HTTP/1.1 503" &&
  curl -s -i -H "Host: sick.proxy.test" http://127.0.0.1/ | grep -qi "^retry-after: 1"'
check "HTTP/2 over TLS, negotiated by ALPN, with the dev certificate" bash -c '
  [ "$($CURL --http2 -o /dev/null -w "%{http_version} %{http_code}" https://web.proxy.test/)" = "2 200" ]'
check "HTTP/1.1 over TLS" bash -c '[ "$($CURL --http1.1 -o /dev/null -w "%{http_version} %{http_code}" https://web.proxy.test/)" = "1.1 200" ]'
check "h2c by prior knowledge downstream, and h2c upstream" bash -c '
  curl -s --http2-prior-knowledge -w "\n%{http_version}\n" -H "Host: h2c.proxy.test" http://127.0.0.1/headers | tee /dev/stderr |
    grep -q "^version: HTTP/2.0" && curl -s --http2-prior-knowledge -o /dev/null -w "%{http_version}" -H "Host: web.proxy.test" http://127.0.0.1/ | grep -qx 2'
check "openssl s_client: ALPN h2, ALPN http/1.1, and the certificate chosen by SNI" bash -c '
  echo | openssl s_client -connect 127.0.0.1:443 -servername web.proxy.test -alpn h2 -CAfile $T/ca.pem 2>&1 | tee $T/s1 >/dev/null
  grep -q "ALPN protocol: h2" $T/s1 && grep -q "Verify return code: 0 (ok)" $T/s1 &&
  echo | openssl s_client -connect 127.0.0.1:443 -servername web.proxy.test -alpn http/1.1 2>&1 | grep -q "ALPN protocol: http/1.1" &&
  echo | openssl s_client -connect 127.0.0.1:443 -servername files.proxy.test -CAfile $T/certs/files.crt 2>&1 | tee $T/s2 | grep -q "subject=CN = files.proxy.test" &&
  grep -q "Verify return code: 0 (ok)" $T/s2'
check "a name with no certificate is refused at the handshake" bash -c '
  ! echo | openssl s_client -connect 127.0.0.1:443 -servername other.test 2>&1 | grep -q "BEGIN CERTIFICATE"'
check "a certificate from files is served" bash -c '$CURL --cacert $T/certs/files.crt https://files.proxy.test/ | grep -q proxyweb'
check "X-Forwarded-For, -Proto and -Host reach the replica; hop-by-hop fields do not" bash -c '
  $CURL --http1.1 -H "X-Forwarded-For: 192.0.2.7" -H "Connection: x-drop" -H "X-Drop: 1" https://web.proxy.test/headers | tee /dev/stderr > $T/h
  grep -qx "x-forwarded-for: 192.0.2.7, 127.0.0.1" $T/h && grep -qx "x-forwarded-proto: https" $T/h &&
  grep -qx "x-forwarded-host: web.proxy.test" $T/h && ! grep -qi "^x-drop" $T/h'
check "a WebSocket upgrade echoes through the proxy" /usr/bin/python3 tests/lib/ws_echo.py ws://web.proxy.test/ws 127.0.0.1 80 one two three
check "a body over --ingress-max-body gets 413" bash -c '
  head -c 4096 /dev/zero > $T/big; head -c 512 /dev/zero > $T/small
  [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: web.proxy.test" --data-binary @$T/big http://127.0.0.1/echo)" = 413 ] &&
  [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: web.proxy.test" -H "Transfer-Encoding: chunked" --data-binary @$T/big http://127.0.0.1/echo)" = 413 ] &&
  curl -s -H "Host: web.proxy.test" --data-binary @$T/small http://127.0.0.1/echo | grep -qx "512 bytes"'
check "too many header fields, or too large ones, get 431" bash -c '
  args=(); for i in $(seq 1 60); do args+=(-H "X-H$i: v"); done
  [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: web.proxy.test" "${args[@]}" http://127.0.0.1/)" = 431 ] &&
  [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: web.proxy.test" -H "X-Big: $(head -c 70000 /dev/zero | tr "\0" a)" http://127.0.0.1/)" = 431 ]'
check "a malformed request line gets 400, and the next client is served" bash -c '
  exec 3<>/dev/tcp/127.0.0.1/80; printf "GARBAGE\r\n\r\n" >&3; timeout 5 head -1 <&3 | grep -q " 400 " &&
  curl -s -H "Host: web.proxy.test" http://127.0.0.1/ | grep -q proxyweb'
check "a slowloris trickle is cut after the header timeout while others are served" bash -c '
  trap "" PIPE; exec 3<>/dev/tcp/127.0.0.1/80; printf "GET / HTTP/1.1\r\nHost: web.proxy.test\r\n" >&3
  for i in 1 2 3 4; do printf "X-Slow-$i: 1\r\n" >&3 2>/dev/null; curl -s -m 5 -H "Host: web.proxy.test" http://127.0.0.1/ | grep -q proxyweb || exit 1; sleep 1; done
  ! timeout 5 cat <&3 | grep -q "200 OK"'
check "an h2 rapid-reset burst is cut off, and h2 clients are still served" bash -c '
  n=$(timeout 30 /usr/bin/python3 tests/lib/h2_rapid_reset.py 127.0.0.1 80 web.proxy.test 20000); echo "opened $n"
  curl -s --http2-prior-knowledge -H "Host: web.proxy.test" http://127.0.0.1/ | grep -q proxyweb'
check "2,500 idle connections over a cap of 2,000: the idlest go, a new client is served" bash -c '
  /usr/bin/python3 - <<PY
import socket, subprocess
socks = []
for i in range(2500):
    s = socket.create_connection(("127.0.0.1", 80), timeout=5); socks.append(s)
out = subprocess.run(["curl", "-s", "-m", "10", "-H", "Host: web.proxy.test", "http://127.0.0.1/"], capture_output=True, text=True).stdout
closed = 0
for s in socks[:400]:
    s.settimeout(2)
    try:
        closed += s.recv(1) == b""
    except OSError:
        closed += 1
print("answer", out.strip(), "first 400 closed:", closed)
assert "proxyweb" in out and closed == 400
PY'
check "h2load: 2,000 requests over TLS h2, all answered" bash -c '
  h2load -n 2000 -c 10 -m 10 --connect-to=127.0.0.1:443 https://web.proxy.test/ 2>&1 | tee /dev/stderr | grep -q "2000 succeeded, 0 failed"'
check "metrics: per-route requests, latency and in-flight, valid for promtool" bash -c '
  curl -s -m 5 http://127.0.0.1:9464/metrics > $T/m; promtool check metrics < $T/m &&
  grep -q "zlayer_proxy_requests_total{class=\"2xx\",route=\"proxy/web/http\"}" $T/m &&
  [ "$(grep -c "zlayer_proxy_upstream_requests_total{route=\"proxy/web/http\",upstream=" $T/m)" = 3 ] &&
  grep -q "zlayer_proxy_request_duration_seconds_bucket{route=\"proxy/web/tls\"" $T/m &&
  grep -q "zlayer_proxy_refusals_total{reason=\"no_healthy_replica\",route=\"sick/sick/http\"}" $T/m &&
  grep -q "zlayer_proxy_requests_in_flight" $T/m'
check "the access log has one line per request" bash -c 'grep "zlayer::access" $T/node.log | grep -q "host=\"web.proxy.test\""'
# The attack: a spec names the node's own identity (its mTLS key, in the
# data dir) as a route's certificate, to have the ingress serve with it.
identity_refused() {
  cat > $T/steal.yaml <<YAML
version: v1
deployment: steal
services:
  s:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "8080" }
    endpoints:
      - { name: tls, protocol: https, port: 8080, host: steal.proxy.test, expose: public, tls: { cert: $ZLAYER_DATA_DIR/cluster/node.pem, key: $ZLAYER_DATA_DIR/cluster/node.key } }
YAML
  ls $ZLAYER_DATA_DIR/cluster/node.key >/dev/null || return 1
  "$Z" up -d --timeout 60 $T/steal.yaml >/dev/null || return 1
  for _ in $(seq 1 50); do grep -q "https host steal.proxy.test: TLS file of $ZLAYER_DATA_DIR/cluster/node.pem is always refused: it exposes zlayer's data dir" $T/node.log && break; sleep 0.1; done
  grep "steal.proxy.test" $T/node.log | tail -1
  grep -q "https host steal.proxy.test: TLS file of $ZLAYER_DATA_DIR/cluster/node.pem is always refused: it exposes zlayer's data dir" $T/node.log &&
    ! echo | openssl s_client -connect 127.0.0.1:443 -servername steal.proxy.test 2>&1 | grep -q "BEGIN CERTIFICATE"
  local rc=$?; "$Z" down steal >/dev/null; return $rc
}
export -f identity_refused
check "a spec naming the node's own identity key as a certificate is refused, and nothing is served with it" identity_refused
# A route's certificate from two secrets: served with the key never on disk;
# a new value of the pair is served without a restart of any replica.
secret_cert() { # secret_cert SERIAL: a fresh pair for secret.proxy.test as secrets
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=secret.proxy.test \
    -set_serial "$1" -addext subjectAltName=DNS:secret.proxy.test -keyout $T/sec.key -out $T/sec.crt 2>/dev/null || return 1
  "$Z" secret create proxy-crt --from-file $T/sec.crt >/dev/null && "$Z" secret create proxy-key - < $T/sec.key >/dev/null
}
served_serial() { echo | openssl s_client -connect 127.0.0.1:443 -servername secret.proxy.test 2>/dev/null | openssl x509 -noout -serial; }
cert_from_secrets() {
  secret_cert 0x5EC1 || return 1
  cat > $T/tls-secret.yaml <<YAML
version: v1
deployment: tlssec
services:
  s:
    image: { name: demo:latest, pull_policy: never }
    env: { PORT: "8080", MESSAGE: from-secret-route }
    endpoints:
      - { name: tls, protocol: https, port: 8080, host: secret.proxy.test, expose: public, tls: { cert_secret: proxy-crt, key_secret: proxy-key } }
YAML
  "$Z" up -d --timeout 60 $T/tls-secret.yaml >/dev/null || return 1
  local c="curl -sS -m 5 --cacert $T/sec.crt --resolve secret.proxy.test:443:127.0.0.1"
  for _ in $(seq 1 100); do $c https://secret.proxy.test/ 2>/dev/null | grep -q from-secret-route && break; sleep 0.1; done
  $c https://secret.proxy.test/ | grep -q from-secret-route || return 1
  [ "$(served_serial)" = "serial=5EC1" ] || { served_serial; return 1; }
  local before; before=$("$Z" ps -o json | jq -c '[.[] | select(.deployment == "tlssec") | .container_id]')
  secret_cert 0x5EC2 || return 1
  for _ in $(seq 1 100); do [ "$(served_serial)" = "serial=5EC2" ] && break; sleep 0.1; done
  [ "$(served_serial)" = "serial=5EC2" ] || { served_serial; return 1; }
  $c https://secret.proxy.test/ | grep -q from-secret-route || return 1
  [ "$("$Z" ps -o json | jq -c '[.[] | select(.deployment == "tlssec") | .container_id]')" = "$before" ] || { echo "a replica restarted"; return 1; }
  ! grep -a -r -l -F "$(sed -n 2p $T/sec.key)" "$ZLAYER_DATA_DIR" 2>/dev/null | grep -q . || { echo "the key is in the data dir"; return 1; }
}
cert_from_secrets_then_down() {
  cert_from_secrets; local rc=$?
  "$Z" down tlssec >/dev/null; "$Z" secret rm proxy-crt >/dev/null; "$Z" secret rm proxy-key >/dev/null
  return $rc
}
export -f secret_cert served_serial cert_from_secrets cert_from_secrets_then_down
check "a certificate from two secrets is served; a new value is served without a restart; the key is not in the data dir" cert_from_secrets_then_down
ids() { "$Z" ps -o json | jq -c '[.[] | select(.deployment == "proxy") | .container_id] | sort'; }
export -f ids
check "a hot route change moves the host at once and rolls nothing" bash -c '
  before=$(ids); spec moved.proxy.test; "$Z" up -d --timeout 60 $T/proxy.yaml >/dev/null || exit 1
  for _ in $(seq 1 50); do curl -s -H "Host: moved.proxy.test" http://127.0.0.1/ | grep -q proxyweb && break; sleep 0.1; done
  echo "before: $before"; echo "after:  $(ids)"
  curl -s -H "Host: moved.proxy.test" http://127.0.0.1/ | grep -q proxyweb &&
  [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Host: web.proxy.test" http://127.0.0.1/)" = 404 ] && [ "$before" = "$(ids)" ]'
check "a replica killed under load: the loop sees at most the one request it was serving fail" bash -c '
  (for i in $(seq 1 400); do curl -s -o /dev/null -w "%{http_code}\n" -m 10 -H "Host: moved.proxy.test" http://127.0.0.1/slow/5; done > $T/codes) &
  loop=$!; sleep 1
  for p in $(pgrep -f zlayer-demo); do grep -qz MESSAGE=proxyweb /proc/$p/environ 2>/dev/null && { kill -9 $p; break; }; done
  wait $loop; sort $T/codes | uniq -c; [ "$(grep -vc "^200$" $T/codes)" -le 1 ]'
check "a rolling update through the proxy fails no request" bash -c '
  (for i in $(seq 1 1500); do curl -s -o /dev/null -w "%{http_code}\n" -m 10 -H "Host: moved.proxy.test" http://127.0.0.1/; done > $T/roll) &
  loop=$!; sleep 0.5; spec moved.proxy.test proxyweb2; "$Z" up -d --timeout 120 $T/proxy.yaml >/dev/null; up=$?
  wait $loop; sort $T/roll | uniq -c; [ $up = 0 ] && [ "$(grep -vc "^200$" $T/roll)" = 0 ] &&
  curl -s -H "Host: moved.proxy.test" http://127.0.0.1/ | grep -q proxyweb2'
if [ -x "$(command -v sslscan)" ]; then
  check "sslscan: nothing below TLS 1.2 and no weak cipher" bash -c '
    sslscan --no-colour --sni-name=files.proxy.test 127.0.0.1:443 > $T/scan 2>&1; cat $T/scan | grep -E "enabled|Accepted|Preferred" 
    grep -qE "TLSv1.2 +enabled" $T/scan && grep -qE "TLSv1.3 +enabled" $T/scan &&
    ! grep -qE "(SSLv2|SSLv3|TLSv1.0|TLSv1.1) +enabled" $T/scan &&
    ! grep -E "Accepted|Preferred" $T/scan | grep -qE "RC4|DES|NULL|EXP|MD5|CBC|SHA +"'
fi
echo "e2e-proxy: $pass passed, $fail failed"
[ $fail -eq 0 ]
