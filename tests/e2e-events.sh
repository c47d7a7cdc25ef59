# Crash loops and `events -f`, sourced by tests/e2e.sh (uses its $Z, check
# and data dir).
cat > /tmp/e2e-crash.yaml <<'YAML'
version: v1
deployment: crash
services:
  bad:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "echo failing; exit 3"] }
YAML

crash_loop_shown() {
  "$Z" up -d --timeout 2 /tmp/e2e-crash.yaml >/dev/null 2>&1
  local end=$((SECONDS+60))
  until "$Z" ps -o json | jq -e '.[] | select(.deployment == "crash" and .state == "crash-loop" and .restarts >= 3)' >/dev/null; do
    [ $SECONDS -lt $end ] || { "$Z" ps; return 1; }; sleep 0.2; done
  "$Z" ps | grep bad | grep -q crash-loop || { "$Z" ps; return 1; }
  "$Z" events -o json | jq -e '[.[] | select(.deployment == "crash" and .kind == "crash-loop" and (.message | test("exited 3 times in a row within 60 s of starting \\(exited with code 3\\)")) and .node != "")] | length == 1' || { "$Z" events | grep crash; return 1; }
  "$Z" down crash
}

events_followed() {
  local out; out=$(mktemp)
  timeout 30 "$Z" events -f -o json > "$out" &
  local f=$!
  # What happened before is printed first, once.
  local end=$((SECONDS+20))
  until grep -q '"kind":"crash-loop"' "$out"; do [ $SECONDS -lt $end ] || { kill $f; cat "$out"; return 1; }; sleep 0.2; done
  local before; before=$(wc -l < "$out")
  sed 's/deployment: crash/deployment: crash2/; s/exit 3/sleep 3600/' /tmp/e2e-crash.yaml > /tmp/e2e-crash2.yaml
  "$Z" up -d --timeout 60 /tmp/e2e-crash2.yaml >/dev/null || { kill $f; return 1; }
  end=$((SECONDS+20))
  until grep -q '"deployment":"crash2".*"kind":"started"' "$out"; do [ $SECONDS -lt $end ] || { kill $f; cat "$out"; return 1; }; sleep 0.2; done
  kill $f; wait $f 2>/dev/null
  "$Z" down crash2 >/dev/null
  # Each event once: no line twice.
  [ "$(sort "$out" | uniq -d | wc -l)" = 0 ] && [ "$(wc -l < "$out")" -gt "$before" ]
}
export -f crash_loop_shown events_followed

check "a replica that keeps exiting soon after starting shows as crash-loop in ps, with one crash-loop event" bash -c crash_loop_shown
check "events -f prints what happened, then each new event once as it happens" bash -c events_followed
