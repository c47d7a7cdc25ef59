# Cron services, sourced by tests/e2e.sh (uses its $Z, check and data dir).
cat > /tmp/e2e-cron.yaml <<'YAML'
version: v1
deployment: cron
services:
  tick:
    rtype: cron
    schedule: "*/2 * * * * * *"
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "echo tick; sleep 3; exit 4"] }
YAML
# Every 2 s, a run that takes 3 s and exits 4: runs start on even seconds, never overlap (fire
# times inside a run are skipped), the exit code is kept, and ps says when the next run is.
cron_runs() {
  "$Z" up -d --timeout 10 /tmp/e2e-cron.yaml >/dev/null || return 1
  local end=$((SECONDS+30))
  until [ "$("$Z" events -o json | jq '[.[] | select(.deployment=="cron" and .kind=="exit")] | length')" -ge 2 ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps; "$Z" events | grep cron; return 1; }; sleep 0.2; done
  local ev; ev=$("$Z" events -o json | jq -c '[.[] | select(.deployment=="cron")]')
  echo "$ev" | jq -r '.[] | "\(.time_ms) \(.kind) \(.message)"'
  echo "$ev" | jq -e '[.[] | select(.kind=="exit")] | all(.message | endswith("exited with code 4"))' >/dev/null || return 1
  # Each run is for an even-second fire time and starts at or after it (how long after is the
  # machine's start latency, which a slow TCG guest stretches past a second); each start comes
  # after the previous exit.
  echo "$ev" | jq -e '[.[] | select(.kind=="started") | (.message | capture("the run due at (?<t>[^)]+)").t | fromdateiso8601) as $due
    | $due % 2 == 0 and .time_ms >= $due * 1000] | length >= 2 and all' >/dev/null || { echo "a run started off schedule"; return 1; }
  echo "$ev" | jq -e '[.[] | select(.kind=="started" or .kind=="exit") | .kind] | . as $k | [range(0; length - 1) | select($k[.] == $k[. + 1])] | length == 0' >/dev/null || { echo "runs overlapped"; return 1; }
  # Between two runs (a window of about a second), ps says when the next one is.
  local line="" i
  for i in $(seq 1 100); do
    line=$("$Z" ps | grep -E 'cron/tick .*(next run at 20[0-9-]+T[0-9:]+Z)') && break; sleep 0.1
  done
  echo "$line"; [ -n "$line" ] || { "$Z" ps; return 1; }
  [ "$("$Z" logs tick | grep -c tick)" -ge 2 ] || { echo "logs lack the runs"; return 1; }
  "$Z" down cron >/dev/null
}
export Z
export -f cron_runs
check "cron: runs on schedule, never overlapping, exit codes kept" bash -c cron_runs

# concurrency: allow starts a fire time's run beside the one still running;
# replace stops the running one (its stop sequence) and starts the new one.
cat > /tmp/e2e-cron-allow.yaml <<'YAML'
version: v1
deployment: cronallow
services:
  tick:
    rtype: cron
    schedule: "*/2 * * * * * *"
    concurrency: allow
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "sleep 3"] }
YAML
sed 's/deployment: cronallow/deployment: cronrepl/; s/concurrency: allow/concurrency: replace/; s/sleep 3/sleep 30/' /tmp/e2e-cron-allow.yaml > /tmp/e2e-cron-repl.yaml
# The most runs of deployment $1 at once, from its started and exit (or replaced) events.
cron_most() {
  "$Z" events -o json | jq "[.[] | select(.deployment == \"$1\" and (.kind == \"started\" or .kind == \"exit\" or .kind == \"replaced\"))]
    | sort_by(.time_ms) | reduce .[] as \$e ({n: 0, most: 0}; .n += (if \$e.kind == \"started\" then 1 else -1 end) | .most = ([.most, .n] | max)) | .most"
}
cron_kind_count() { "$Z" events -o json | jq "[.[] | select(.deployment == \"$1\" and .kind == \"$2\")] | length"; }
cron_allow() {
  "$Z" up -d --timeout 5 /tmp/e2e-cron-allow.yaml >/dev/null 2>&1
  local end=$((SECONDS+40))
  until [ "$(cron_kind_count cronallow exit)" -ge 3 ]; do [ $SECONDS -lt $end ] || { "$Z" events | grep cronallow; return 1; }; sleep 0.2; done
  local most; most=$(cron_most cronallow); echo "most cronallow runs at once: $most, overlaps: $(cron_kind_count cronallow overlap)"
  [ "$most" -eq 2 ] && [ "$(cron_kind_count cronallow overlap)" -ge 1 ] || { "$Z" events | grep cronallow; return 1; }
  "$Z" down cronallow >/dev/null || return 1
  [ "$(find "$ZLAYER_DATA_DIR/containers" -mindepth 1 -maxdepth 1 -name 'cronallow-*' | wc -l)" -eq 0 ] || { echo "containers left"; return 1; }
}
cron_replace() {
  "$Z" up -d --timeout 5 /tmp/e2e-cron-repl.yaml >/dev/null 2>&1
  local end=$((SECONDS+40))
  until [ "$(cron_kind_count cronrepl replaced)" -ge 2 ]; do [ $SECONDS -lt $end ] || { "$Z" events | grep cronrepl; return 1; }; sleep 0.2; done
  local most; most=$(cron_most cronrepl); echo "most cronrepl runs at once: $most"
  "$Z" events | grep cronrepl | tail -6
  [ "$most" -eq 1 ] && "$Z" events -o json | jq -e '[.[] | select(.deployment == "cronrepl" and .kind == "replaced")][0].message | startswith("replaced by the run due at 20")' >/dev/null || return 1
  "$Z" down cronrepl >/dev/null
}
export -f cron_most cron_kind_count cron_allow cron_replace
check "cron concurrency allow: a run still going when the next is due runs on beside it" bash -c cron_allow
check "cron concurrency replace: the running run is stopped and the due one starts" bash -c cron_replace
