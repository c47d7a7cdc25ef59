# Metering, sourced by tests/e2e.sh (uses its $Z, check and data dir). A
# task that burns CPU and one that allocates memory, each measured another
# way too: the shell's own `time -p` (user + sys) and the 96 MiB the demo
# server allocates and touches. Both must agree with the record within 10%.
cat > /tmp/e2e-meter.yaml <<'YAML'
version: v1
deployment: meter
services:
  burn:
    rtype: job
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "nslookup hello 10.240.0.1 >/dev/null 2>&1; time -p sh -c 'i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done'"] }
  alloc:
    rtype: job
    image: { name: demo:latest }
    env: { ALLOC_MB: "96", EXIT_AFTER: "1", EXIT_CODE: "0", PORT: "8080" }
    resources: { memory: 256Mi }
YAML
usage_of() { curl -s --unix-socket "$ZLAYER_DATA_DIR/zlayer.sock" "http://node/v1/usage?deployment=meter&service=$1"; }
metered() {
  "$Z" up -d --timeout 2 /tmp/e2e-meter.yaml >/dev/null 2>&1
  local end=$((SECONDS+90))
  until [ "$(usage_of burn | jq length)" -ge 1 ] && [ "$(usage_of alloc | jq length)" -ge 1 ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps | grep meter; usage_of burn; return 1; }; sleep 0.5; done
  local burn alloc said
  burn=$(usage_of burn | jq -c '.[0]'); alloc=$(usage_of alloc | jq -c '.[0]'); echo "burn: $burn"; echo "alloc: $alloc"
  # The shell's own account: user + sys seconds.
  said=$("$Z" logs burn)
  echo "$said"
  local own_ms; own_ms=$(echo "$said" | awk '/(user|sys) / {s += $NF} END {printf "%d", s * 1000}')
  local cpu_ms; cpu_ms=$(echo "$burn" | jq .cpu_ms)
  echo "cpu: metered $cpu_ms ms, the shell's own $own_ms ms"
  [ "$own_ms" -ge 500 ] || { echo "the loop burned too little to compare"; return 1; }
  awk -v a="$cpu_ms" -v b="$own_ms" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.1 * b) }' || return 1
  local peak; peak=$(echo "$alloc" | jq .memory_peak_bytes); local want=$((96 * 1024 * 1024))
  echo "memory: metered peak $peak, allocated $want"
  awk -v a="$peak" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.1 * b) }' || return 1
  # Wall time, exit status, kind, node, and network bytes (its DNS query).
  echo "$burn" | jq -e '.kind == "job" and .exit_status == 0 and .attempt == 1 and .wall_ms >= .cpu_ms * 0.5 and (.net_rx_bytes + .net_tx_bytes) > 0 and .node != ""' >/dev/null || return 1
  echo "$alloc" | jq -e '.wall_ms >= 1000 and .gpus == 0 and .gpu_ms == 0' >/dev/null
}
metered_everywhere() {
  # job ls -o json carries each job's records and their sum.
  "$Z" job ls -o json | jq -e '[.[] | select(.job == "meter/burn")][0] | .usage.runs == 1 and .usage.cpu_ms > 0 and (.runs | length) == 1' >/dev/null || { "$Z" job ls -o json; return 1; }
  # Prometheus counters, in the format promtool accepts.
  curl -s -m 3 http://127.0.0.1:9464/metrics > /tmp/e2e-meter.metrics
  promtool check metrics < /tmp/e2e-meter.metrics || return 1
  grep -E '^zlayer_usage_cpu_seconds_total\{deployment="meter",service="burn"\} [0-9.]+' /tmp/e2e-meter.metrics &&
    grep -E '^zlayer_usage_runs_total\{deployment="meter",service="alloc"\} 1$' /tmp/e2e-meter.metrics || return 1
  # Filters: time, and a bad one named with the fix.
  [ "$(curl -s --unix-socket "$ZLAYER_DATA_DIR/zlayer.sock" "http://node/v1/usage?deployment=meter&since_ms=99999999999999" | jq length)" -eq 0 ] || return 1
  curl -s --unix-socket "$ZLAYER_DATA_DIR/zlayer.sock" "http://node/v1/usage?color=red" | grep -q 'filters are deployment=, service=, since_ms= and until_ms='
}
export -f usage_of metered metered_everywhere
check "metering: a task's CPU time and memory peak agree within 10% with what it burned and allocated; wall, exit, network recorded" bash -c metered
check "metering: job ls -o json, GET /v1/usage (filters) and Prometheus counters (promtool) show it" bash -c metered_everywhere
"$Z" down meter >/dev/null 2>&1
