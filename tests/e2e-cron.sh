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
