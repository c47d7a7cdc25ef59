# Job tasks' completions, parallelism, retries and deadline, sourced by tests/e2e.sh (uses its $Z, check and
# data dir). On one node each retry runs here again, after the leader placed it.
cat > /tmp/e2e-jobs.yaml <<'YAML'
version: v1
deployment: jobs
services:
  flaky:
    rtype: job
    retries: 3
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "n=$(cat /tries/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tries/n; echo attempt $n; [ $n -ge 2 ]"] }
    storage:
      - { type: named, name: tries, target: /tries }
  doomed:
    rtype: job
    retries: 2
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "exit 3"] }
  batch:
    rtype: job
    completions: 4
    parallelism: 2
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sh", "-c", "sleep 2"] }
  slow:
    rtype: job
    deadline: 2s
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "60"] }
YAML
job_row() { "$Z" ps -o json | jq -c ".[] | select(.deployment == \"jobs\" and .service == \"$1\")"; }
job_is() { [ "$(job_row "$1" | jq -c "select($2)" | wc -l)" -eq 1 ]; }
job_until() { local end=$((SECONDS+$1)); shift; until job_is "$@"; do [ $SECONDS -lt $end ] || { job_row "$1"; return 1; }; sleep 0.2; done; }

# 4 tasks, 2 at a time: the others wait (ps says why), all 4 succeed, and the
# events never show more than 2 running at once.
jobs_parallelism() {
  "$Z" up -d --timeout 2 /tmp/e2e-jobs.yaml >/dev/null 2>&1
  local end=$((SECONDS+30))
  until "$Z" ps -o json | jq -r '.[] | select(.service == "batch") | .message' | grep -q "^waiting: 2 of the job's tasks run at once (parallelism)"; do
    [ $SECONDS -lt $end ] || { "$Z" ps | grep batch; return 1; }; sleep 0.2; done
  end=$((SECONDS+60))
  until [ "$("$Z" ps -o json | jq '[.[] | select(.service == "batch" and .state == "exited" and .message == "exited with code 0")] | length')" -eq 4 ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps | grep batch; return 1; }; sleep 0.2; done
  local most
  most=$("$Z" events -o json | jq '[.[] | select(.deployment == "jobs" and .service == "batch" and (.kind == "started" or .kind == "exit"))]
    | sort_by(.time_ms) | reduce .[] as $e ({n: 0, most: 0}; .n += (if $e.kind == "started" then 1 else -1 end) | .most = ([.most, .n] | max)) | .most')
  echo "most batch tasks running at once: $most"
  [ "$most" -le 2 ] && [ "$most" -ge 1 ] || return 1
  # Done tasks hold no address: thousands of short tasks never exhaust the node's range.
  [ "$("$Z" ps -o json | jq '[.[] | select(.service == "batch" and .ip != "")] | length')" -eq 0 ]
}

jobs_retry_and_give_up() {
  # Fails once, succeeds on its second attempt: done, restarted once.
  job_until 60 flaky '.state == "exited" and .restarts == 1 and (.message | test("exited with code 0"))' || return 1
  # Always fails: 3 attempts (retries: 2), then it gives up and stays failed.
  job_until 60 doomed '.state == "failed" and .message == "gave up after 3 attempt(s): exited with code 3"' || return 1
  sleep 2
  job_is doomed '.state == "failed" and .restarts == 2' || { job_row doomed; return 1; }
  [ "$("$Z" events -o json | jq '[.[] | select(.deployment == "jobs" and .service == "doomed" and .kind == "exit")] | length')" -eq 3 ] || { "$Z" events | grep doomed; return 1; }
}

jobs_deadline() {
  job_until 30 slow '.state == "failed" and (.message | startswith("gave up: the job'"'"'s deadline of 2s passed"))' || return 1
  "$Z" events | grep -q "deadline.*gave up: the job's deadline of 2s passed" || { "$Z" events | grep slow; return 1; }
}
# job ls sums each job's tasks; job logs shows every attempt's output; job run
# runs one service of the file alone, as a job of its own, and exits 0 only
# when every task succeeded.
jobs_cli() {
  local ls; ls=$("$Z" job ls -o json) || return 1
  echo "$ls" | jq -e '[.[] | select(.job == "jobs/batch")][0] | .tasks == 4 and .succeeded == 4 and .attempts == 4' >/dev/null || { echo "$ls"; return 1; }
  echo "$ls" | jq -e '[.[] | select(.job == "jobs/doomed")][0] | .tasks == 1 and .failed == 1 and .attempts == 3' >/dev/null || { echo "$ls"; return 1; }
  "$Z" job ls
  "$Z" job ls | grep -Eq '^jobs/flaky +1 +1 +0 +0 +0 +2 *$' || return 1
  "$Z" job logs flaky | grep -q 'attempt 2' || { "$Z" job logs flaky; return 1; }
  local out rc
  out=$("$Z" job run /tmp/e2e-jobs.yaml flaky 2>&1); rc=$?; echo "$out"
  [ $rc -eq 0 ] && echo "$out" | grep -q '^job jobs-flaky-[0-9a-f]*/flaky: 1 succeeded, 0 failed$' || return 1
  out=$("$Z" job run /tmp/e2e-jobs.yaml doomed 2>&1); rc=$?; echo "$out"
  [ $rc -eq 1 ] && echo "$out" | grep -q 'gave up after 3 attempt(s): exited with code 3' || return 1
  "$Z" ps -o json | jq -r '.[].deployment' | grep '^jobs-' | sort -u | xargs -r -n1 "$Z" down
}
export -f job_row job_is job_until jobs_parallelism jobs_retry_and_give_up jobs_deadline jobs_cli

check "jobs: completions 4 with parallelism 2: two run at a time, the others wait saying why, all succeed and free their addresses" bash -c jobs_parallelism

check "jobs: a failed task is retried (the leader places each attempt) up to its cap, then gives up" bash -c jobs_retry_and_give_up
check "jobs: a task past its deadline is killed and fails for good" bash -c jobs_deadline
check "jobs: job ls sums tasks and attempts, job logs shows every attempt, job run runs one service now and exits with its outcome" bash -c jobs_cli
check "jobs: retries on a service is refused with the fix" bash -c "sed 's/rtype: job/rtype: service/' /tmp/e2e-jobs.yaml > /tmp/e2e-jobs-bad.yaml; '$Z' validate /tmp/e2e-jobs-bad.yaml 2>&1 | grep -q 'services.doomed.retries: .retries. applies only to .rtype: job.'"
"$Z" down jobs >/dev/null 2>&1
