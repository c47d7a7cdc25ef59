# Readiness and liveness probes apart, sourced by tests/e2e.sh (uses its $Z,
# check and data dir). One replica serves busybox httpd on published port
# 18095; /tmp/ready decides readiness, /tmp/dead liveness.
cat > /tmp/e2e-probe.yaml <<'YAML'
version: v1
deployment: probe
services:
  web:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www"] }
    endpoints:
      - { name: http, protocol: http, port: 8080, host_port: 18095, expose: public }
    readiness:
      interval: 200ms
      retries: 1
      check: { type: command, command: ["test", "-e", "/tmp/ready"] }
    liveness:
      interval: 200ms
      retries: 2
      check: { type: command, command: ["test", "!", "-e", "/tmp/dead"] }
YAML
probe_row() { "$Z" ps -o json | jq -c '.[] | select(.deployment == "probe")'; }
probe_is() { probe_row | jq -e "$1" >/dev/null; }
served() { [ "$(curl -s -m 2 http://127.0.0.1:18095/)" = served ]; }
until_true() { local end=$((SECONDS+$1)); shift; until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done; }

readiness_gates_traffic() {
  "$Z" up -d --timeout 2 /tmp/e2e-probe.yaml >/dev/null 2>&1 # not ready: up waits in vain
  # Not ready yet: starting, then unhealthy after one failed probe (retries: 1).
  until_true 30 probe_is '.state == "running" and .health != "healthy"' || { probe_row; return 1; }
  ! served || { echo "served before ready"; return 1; }
  local cid; cid=$(probe_row | jq -r .container_id)
  "$Z" exec web/1 -- touch /tmp/ready || return 1
  until_true 30 served || { probe_row; return 1; }
  probe_is '.health == "healthy"' || return 1
  # Not ready again: out of traffic, and not restarted.
  "$Z" exec web/1 -- rm /tmp/ready || return 1
  until_true 30 probe_is '.health == "unhealthy"' || { probe_row; return 1; }
  until_true 30 bash -c '! served' || return 1
  probe_is ".state == \"running\" and .restarts == 0 and .container_id == \"$cid\"" || { probe_row; return 1; }
  "$Z" exec web/1 -- touch /tmp/ready && until_true 30 served
}

liveness_restarts() {
  local cid; cid=$(probe_row | jq -r .container_id)
  "$Z" exec web/1 -- touch /tmp/dead || return 1
  until_true 60 probe_is ".restarts == 1 and .container_id != \"$cid\" and .state == \"running\"" || { probe_row; return 1; }
  "$Z" events | grep -q "liveness check failed: restarting" || return 1
  # The new container starts without /tmp/ready: out of traffic until ready.
  probe_is '.health != "healthy"' || { probe_row; return 1; }
  ! served
}
export -f probe_row probe_is served until_true readiness_gates_traffic liveness_restarts

check "readiness: a replica takes traffic only while ready; not ready it leaves traffic and is not restarted" bash -c readiness_gates_traffic
check "liveness: failing it restarts the replica (events say why); readiness starts over" bash -c liveness_restarts
check "a spec with health beside readiness is refused with the fix" bash -c "printf '    health: { check: { type: tcp, port: 8080 } }\n' | cat /tmp/e2e-probe.yaml - > /tmp/e2e-probe-bad.yaml; '$Z' validate /tmp/e2e-probe-bad.yaml 2>&1 | grep -q 'services.web.health: .health. is both the readiness and the liveness probe'"
"$Z" down probe >/dev/null 2>&1
