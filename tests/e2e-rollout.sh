# Rolling updates, sourced by tests/e2e.sh (uses its $Z, check and data dir).
# One spec file; the caller's environment ($E:) makes each revision.
# update.timeout is generous (60 s) wherever a rollout must succeed, so a
# slow machine cannot fail it; only the timeout check uses a 2 s copy.
cat > /tmp/e2e-roll.yaml <<'YAML'
version: v1
deployment: roll
services:
  web:
    image: { name: demo:latest }
    env: { PORT: "8080", MESSAGE: $E:MSG, SLOW_START: $E:SLOW, EXIT_AFTER: $E:EXIT }
    endpoints:
      - { name: http, protocol: http, port: 8080, host_port: 18090, expose: public }
    scale: { mode: fixed, replicas: 2 }
    update: { parallelism: 1, timeout: 60s }
    health:
      start_grace: 3s
      interval: 100ms
      timeout: 500ms
      retries: 2
      check: { type: http, url: "http://localhost:8080/health" }
  side:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
YAML
roll_apply() { MSG=$1 SLOW=$2 EXIT=$3 "$Z" up -d --timeout 60 /tmp/e2e-roll.yaml; }
web_json() { "$Z" ps -o json | jq -c '[.[] | select(.deployment=="roll" and .service=="web")]'; }
web_revision() { "$Z" rollouts -o json | jq -r '.[] | select(.deployment=="roll" and .service=="web") | .revision'; }

# v1 -> v2 (1 s slow start): traffic never fails, the replicas are replaced
# one at a time, the new one healthy before the old one goes, and the
# unchanged service is left alone. Two 4 s requests, one on each old
# replica, are in flight when the first old one is replaced (not before
# its 1 s slow start): the node lets them finish before it stops it.
rollout_zero_downtime() {
  roll_apply v1 "" "" >/dev/null || return 1
  local side; side=$("$Z" ps -o json | jq -r '.[] | select(.service=="side") | .container_id')
  local flag=/tmp/e2e-roll.flag; rm -f "$flag" /tmp/e2e-roll.samples /tmp/e2e-roll.slow*
  for i in 1 2; do curl -sf -m 20 http://127.0.0.1:18090/slow/4000 > /tmp/e2e-roll.slow$i & done
  ( n=0; f=0; while [ ! -e "$flag" ] && [ $n -lt 3000 ]; do
      curl -sf -m 10 http://127.0.0.1:18090/ >/dev/null || f=$((f+1)); n=$((n+1)); done
    echo "requests=$n failed=$f" > /tmp/e2e-roll.curl ) &
  local curl_pid=$!
  ( n=0; while [ ! -e "$flag" ] && [ $n -lt 600 ]; do web_json >> /tmp/e2e-roll.samples; n=$((n+1)); done ) &
  local ps_pid=$!
  roll_apply v2 1 ""; local rc=$?
  touch "$flag"; wait $curl_pid $ps_pid; wait
  cat /tmp/e2e-roll.curl; [ $rc -eq 0 ] || return 1
  grep -q 'failed=0$' /tmp/e2e-roll.curl || return 1
  grep -q '^v1 from' /tmp/e2e-roll.slow1 && grep -q '^v1 from' /tmp/e2e-roll.slow2 || { echo "a request in flight on an old replica failed"; return 1; }
  # Never fewer than 2 serving, never more than one replacement at a time, and a replacement was seen.
  jq -s -e 'all(.[]; ([.[] | select(.state=="running" and .health=="healthy")] | length) >= 2)' /tmp/e2e-roll.samples || { echo "a sample had fewer than 2 healthy"; return 1; }
  jq -s -e 'all(.[]; ([.[] | select(.surge)] | length) <= 1) and any(.[]; any(.[]; .surge))' /tmp/e2e-roll.samples || { echo "surge count wrong"; return 1; }
  local rev; rev=$(web_revision)
  web_json | jq -e --arg r "$rev" 'length == 2 and all(.[]; .revision == $r and (.surge | not))' || return 1
  for i in 1 2 3 4; do curl -s -m 2 http://127.0.0.1:18090/; echo; done | grep -c '^v2 from' | grep -qx 4 || return 1
  [ "$("$Z" ps -o json | jq -r '.[] | select(.service=="side") | .container_id')" = "$side" ] || { echo "side was restarted"; return 1; }
}

# A replacement that exits stops the rollout: `up -d` says why, the old
# replicas keep serving, and re-applying the same spec changes nothing.
rollout_failure_stops() {
  local before; before=$(web_json | jq -c '[.[].container_id] | sort')
  local out; out=$(roll_apply v3 "" 0 2>&1); echo "$out"
  echo "$out" | grep -q 'roll/web: rollout stopped: the new replica web/1 (revision [0-9a-f]*) exited before it was healthy: exited with code 1; the old replicas keep running' || return 1
  [ "$(web_json | jq -c '[.[].container_id] | sort')" = "$before" ] || { echo "old replicas changed"; return 1; }
  for i in 1 2; do curl -s -m 2 http://127.0.0.1:18090/; echo; done | grep -c '^v2 from' | grep -qx 2 || return 1
  "$Z" rollouts | grep -q 'roll/web .* failed ' || return 1
  local attempts; attempts=$("$Z" events -o json | jq '[.[] | select(.kind=="rollout")] | length')
  out=$(roll_apply v3 "" 0 2>&1); echo "$out"
  echo "$out" | grep -q '(unchanged)' && echo "$out" | grep -q 'rollout stopped' || return 1
  sleep 0.5
  [ "$("$Z" events -o json | jq '[.[] | select(.kind=="rollout")] | length')" = "$attempts" ] || { echo "a stopped rollout was retried"; return 1; }
  [ "$(web_json | jq -c '[.[].container_id] | sort')" = "$before" ]
}

# A replacement that never turns healthy within update.timeout stops the rollout too.
rollout_timeout_stops() {
  sed 's/timeout: 60s/timeout: 2s/' /tmp/e2e-roll.yaml > /tmp/e2e-roll-2s.yaml
  local out; out=$(MSG=v4 SLOW=30 EXIT= "$Z" up -d --timeout 60 /tmp/e2e-roll-2s.yaml 2>&1); echo "$out"
  echo "$out" | grep -q 'rollout stopped: the new replica web/1 (revision [0-9a-f]*) was not healthy within 2s' || return 1
  web_json | jq -e 'length == 2 and all(.[]; .state == "running" and .health == "healthy")'
}

# Back to v2 (the revision that runs) is immediate; a scale change alone rolls nothing.
rollout_back_and_scale() {
  local before; before=$(web_json | jq -c '[.[].container_id] | sort')
  roll_apply v2 1 "" || return 1
  [ "$(web_json | jq -c '[.[].container_id] | sort')" = "$before" ] || { echo "back to the running revision restarted replicas"; return 1; }
  sed 's/replicas: 2/replicas: 3/' /tmp/e2e-roll.yaml > /tmp/e2e-roll3.yaml
  MSG=v2 SLOW=1 EXIT= "$Z" up -d --timeout 60 /tmp/e2e-roll3.yaml || return 1
  local now; now=$(web_json)
  echo "$now" | jq -e 'length == 3' >/dev/null || return 1
  for id in $(echo "$before" | jq -r '.[]'); do echo "$now" | grep -q "$id" || { echo "$id was replaced by a scale change"; return 1; }; done
  # Scaling 3 -> 1 with a 3 s request in flight on each replica: the two
  # that go let theirs finish first.
  rm -f /tmp/e2e-roll.slow*
  for i in 1 2 3; do curl -sf -m 20 http://127.0.0.1:18090/slow/3000 > /tmp/e2e-roll.slow$i & done
  sleep 0.5
  sed 's/replicas: 2/replicas: 1/' /tmp/e2e-roll.yaml > /tmp/e2e-roll1.yaml
  MSG=v2 SLOW=1 EXIT= "$Z" up -d --timeout 60 /tmp/e2e-roll1.yaml || return 1
  web_json | jq -e 'length == 1' >/dev/null || { echo "up -d returned before the scale-down finished"; return 1; }
  wait
  [ "$(cat /tmp/e2e-roll.slow* | grep -c '^v2 from')" = 3 ] || { echo "a request in flight on a replica scaled away failed"; return 1; }
  "$Z" down roll >/dev/null
}
# rollout history lists the revisions the cluster keeps; undo applies the
# one before again (its spec and env) and it rolls out like any change.
all_answer() { local n; n=$(for _ in $(seq 1 10); do curl -s -m 2 http://127.0.0.1:18090/ | cut -d' ' -f1; done | sort -u); [ "$n" = "$1" ]; }
rollout_history_undo() {
  roll_apply h1 "" "" >/dev/null && roll_apply h2 "" "" >/dev/null || return 1
  local hist; hist=$("$Z" rollout history roll -o json); echo "$hist" | jq -c '.[] | [.revision, .current]'
  echo "$hist" | jq -e 'length >= 2 and .[-1].current and ([.[] | select(.current)] | length == 1)' >/dev/null || return 1
  "$Z" rollout history roll | grep -q "(current)" || return 1
  "$Z" rollout undo roll || return 1
  for _ in $(seq 1 150); do all_answer h1 && break; sleep 0.2; done
  all_answer h1 || { echo "undo did not bring h1 back"; return 1; }
  local out; out=$("$Z" rollout undo roll --to 999 2>&1) && return 1
  echo "$out" | grep -q "keeps no revision 999" || { echo "$out"; return 1; }
  "$Z" down roll >/dev/null
}
# update.monitor: a replacement healthy at first that exits 2 s later fails
# the rollout when monitored for 5 s; with failure_action: rollback the
# revision before is applied again and serves.
rollout_monitor_rollback() {
  sed 's/update: { parallelism: 1, timeout: 60s }/update: { parallelism: 1, timeout: 60s, monitor: 5s, failure_action: rollback }/' \
    /tmp/e2e-roll.yaml > /tmp/e2e-roll-rb.yaml
  MSG=r1 SLOW= EXIT= "$Z" up -d --timeout 60 /tmp/e2e-roll-rb.yaml >/dev/null || return 1
  local before; before=$("$Z" rollout history roll -o json | jq '.[-1].revision')
  local out; out=$(MSG=r2 SLOW= EXIT=2 "$Z" up -d --timeout 60 /tmp/e2e-roll-rb.yaml 2>&1); echo "$out"
  echo "$out" | grep -q 'revision [0-9]* is no longer current, revision [0-9]* is: roll/web: stopped: the new replica web/[12] (revision [0-9a-f]*) exited' || return 1
  echo "$out" | grep -q 'Rolled back (`update.failure_action: rollback`): `roll` is at revision' || return 1
  local hist; hist=$("$Z" rollout history roll -o json); echo "$hist" | jq -c '.[] | [.revision, .current]'
  [ "$(echo "$hist" | jq '.[-1].revision')" = $((before + 2)) ] || { echo "not one rollback revision after the failed one"; return 1; }
  for _ in $(seq 1 150); do all_answer r1 && break; sleep 0.2; done
  all_answer r1 || return 1
  web_json | jq -e 'length == 2 and all(.[]; .state == "running" and (.surge | not))' >/dev/null || { web_json; return 1; }
  "$Z" down roll >/dev/null
}
export Z
export -f roll_apply web_json web_revision rollout_zero_downtime rollout_failure_stops rollout_timeout_stops rollout_back_and_scale all_answer rollout_history_undo rollout_monitor_rollback
check "rolling update: one at a time, new healthy first, no failed request" bash -c rollout_zero_downtime
check "rolling update: an exiting replacement stops the rollout, old replicas serve" bash -c rollout_failure_stops
check "rolling update: a replacement not healthy within update.timeout stops it" bash -c rollout_timeout_stops
check "rolling update: back to the running revision and scale-only changes restart nothing; scale-down drains" bash -c rollout_back_and_scale
check "rollout history lists the kept revisions; undo rolls the one before back out; a revision not kept is named" bash -c rollout_history_undo
check "update.monitor: a replacement that exits within it fails the rollout; failure_action: rollback applies the revision before" bash -c rollout_monitor_rollback
