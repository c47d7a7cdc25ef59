#!/usr/bin/env bash
# End-to-end tests of the single-node slice with real containers, a real
# bridge and real HTTP clients. Each check prints PASS/FAIL; the last line is
# "N passed, N failed". Uses its own data dir, but the node's default bridge
# (zlayer0, 10.240.0.0/24 as node 1 of its own cluster, DNS on 10.240.0.1:53) and ports 8080, 18090 and
# 9464: no other zlayer node may run on the host meanwhile.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
export ZLAYER_DATA_DIR=$(mktemp -d /tmp/zlayer-e2e.XXXX)
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >/tmp/e2e.out 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' /tmp/e2e.out | tail -20; fi; }
cleanup() {
  for d in hello hog deps other roll cron cronallow cronrepl sec cfg req vol vol2 probe crash crash2 jobs meter; do "$Z" down "$d" >/dev/null 2>&1; done
  "$Z" node stop >/dev/null 2>&1; sleep 0.3
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR" 2>/dev/null
  # Named volumes' filesystems, before their files go.
  awk -v d="$ZLAYER_DATA_DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | xargs -r -n1 umount -l 2>/dev/null
  # E2E_KEEP=DIR keeps the node's log and state for a post-mortem.
  [ -n "${E2E_KEEP:-}" ] && rm -rf "$E2E_KEEP" && cp -a "$ZLAYER_DATA_DIR" "$E2E_KEEP"
  rm -rf "$ZLAYER_DATA_DIR"
}
trap cleanup EXIT

check "import OCI layout tarballs" bash -c "'$Z' image import images/out/busybox.tar && '$Z' image import images/out/demo.tar"
check "import docker-save tarball" bash -c "'$Z' image import images/out/busybox-docker.tar && '$Z' image ls | grep -q busybox-docker"
check "run propagates exit status" bash -c "'$Z' run --rm busybox -- /bin/sh -c 'exit 7'; [ \$? -eq 7 ]"
check "run --rm busybox /bin/true" "$Z" run --rm busybox -- /bin/true
check "default caps: port 101 binds" bash -c "'$Z' run --rm busybox -- /bin/sh -c 'nc -l -p 101 & sleep 0.3; netstat -ltn | grep -q \":101 \"'"
check "default seccomp/caps: mount refused" bash -c "! '$Z' run --rm busybox -- /bin/mount -t tmpfs none /mnt 2>/dev/null"
check "memory limit: OOM reported as OOM" bash -c "'$Z' run --rm --memory 32Mi -e ALLOC_MB=200 demo 2>&1 | grep -q 'OOM killed'"
# cpu, memory and pids limits reach the container's cgroup, on cgroup v1 (the
# hybrid layout) and on pure v2 alike, and the pids limit holds.
cg_limits() {
  # The container's process runs only once its cgroup is set up: wait for its first line.
  local said; said=$(mktemp)
  "$Z" run --rm --cpus 0.5 --memory 48Mi --pids 16 busybox -- /bin/sh -c 'echo started; sleep 3' > "$said" &
  local run=$! id="" i
  for i in $(seq 1 100); do grep -q started "$said" 2>/dev/null && break; sleep 0.05; done
  rm -f "$said"
  id=$(find /sys/fs/cgroup -maxdepth 3 -type d -path "*/zlayer/run-$run-*" -printf '%f\n' 2>/dev/null | head -1)
  [ -n "$id" ] || { echo "no cgroup for run-$run"; return 1; }
  local got want
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    local g=/sys/fs/cgroup/zlayer/$id
    got="v2 $(cat $g/cpu.max) $(cat $g/memory.max) $(cat $g/pids.max)"; want="v2 50000 100000 50331648 16"
  else
    local c=/sys/fs/cgroup
    got="v1 $(cat $c/cpu/zlayer/$id/cpu.cfs_quota_us) $(cat $c/cpu/zlayer/$id/cpu.cfs_period_us) $(cat $c/memory/zlayer/$id/memory.limit_in_bytes) $(cat $c/pids/zlayer/$id/pids.max)"
    want="v1 50000 100000 50331648 16"
  fi
  wait $run
  echo "cgroup $got (want $want)"; [ "$got" = "$want" ] || return 1
  local out; out=$("$Z" run --rm --pids 16 busybox -- /bin/sh -c 'for i in $(seq 1 40); do sleep 2 & done' 2>&1)
  echo "$out"; echo "$out" | grep -q "can't fork"
}
check "cpu, memory and pids limits set in the cgroup (v1 or v2); pids enforced" cg_limits
# A host whose init mounted no cgroup hierarchy (no systemd, no cgroupfs-mount):
# in a mount namespace of its own with /sys/fs/cgroup unmounted, zlayer mounts
# one before its container, which then runs in a zlayer cgroup with its limit.
no_hierarchy_mounted() {
  unshare -m --propagation private bash -c "
    umount -R /sys/fs/cgroup 2>/dev/null
    [ \"\$(stat -fc %T /sys/fs/cgroup)\" = sysfs ] || { echo 'could not unmount /sys/fs/cgroup'; exit 1; }
    '$Z' run --rm --pids 16 busybox -- /bin/sh -c 'cat /proc/self/cgroup' || exit 1
    echo \"mounted: \$(stat -fc %T /sys/fs/cgroup)\"; grep ' /sys/fs/cgroup' /proc/mounts" > /tmp/e2e.nocg 2>&1
  local rc=$?; cat /tmp/e2e.nocg; [ $rc -eq 0 ] || return 1
  grep -Eq '(pids|^0:):/zlayer/run-' /tmp/e2e.nocg && grep -Eq '^mounted: (tmpfs|cgroup2fs)' /tmp/e2e.nocg
}
check "with no cgroup hierarchy mounted, zlayer mounts one and the container runs in it" no_hierarchy_mounted
check "missing image is pulled; a dead registry is named" bash -c "'$Z' run --rm 127.0.0.1:9/nosuch:1 -- /bin/true 2>&1 | grep -q 'registry 127.0.0.1:9 is unreachable'"
check "up -d: 2 replicas healthy" "$Z" up -d --timeout 60 specs/hello.yaml
check "ps lists 2 running healthy replicas" bash -c "[ \$('$Z' ps -o json | grep -c '\"health\": \"healthy\"') -eq 2 ]"
check "ps -o yaml" bash -c "'$Z' ps -o yaml | grep -q 'service: hello'"
# zlayer scale: the count is kept in the cluster state, so `up -d` of the
# unchanged spec keeps it (and waits for it); back to the spec's 2 after.
healthy_count() { "$Z" ps -o json | jq '[.[] | select(.service == "hello" and .state == "running" and .health == "healthy")] | length'; }
scale_holds() {
  "$Z" scale hello 3 || return 1
  for _ in $(seq 1 150); do [ "$(healthy_count)" = 3 ] && break; sleep 0.2; done
  [ "$(healthy_count)" = 3 ] || { "$Z" ps; return 1; }
  "$Z" up -d --timeout 60 specs/hello.yaml || return 1
  [ "$(healthy_count)" = 3 ] || { echo "up of the same spec undid the scale"; "$Z" ps; return 1; }
  out=$("$Z" scale nosuch 2 2>&1) && return 1; echo "$out" | grep -q "no deployment has a service \`nosuch\`" || { echo "$out"; return 1; }
  "$Z" scale hello/hello 2 || return 1
  for _ in $(seq 1 150); do [ "$("$Z" ps -o json | jq '[.[] | select(.service == "hello")] | length')" = 2 ] && break; sleep 0.2; done
  [ "$("$Z" ps -o json | jq '[.[] | select(.service == "hello")] | length')" = 2 ]
}
export -f healthy_count scale_holds
check "scale: 3 replicas, kept by up -d of the same spec; an unknown service is named; back to 2" scale_holds
# zlayer restart rolls every replica out again (new containers, healthy),
# and up -d of the same spec then has nothing to wait for.
hello_ids() { "$Z" ps -o json | jq -r '[.[] | select(.service == "hello") | .container_id] | sort | join(",")'; }
restart_rolls() {
  local before; before=$(hello_ids)
  "$Z" restart hello || return 1
  for _ in $(seq 1 300); do
    now=$(hello_ids)
    [ "$(healthy_count)" = 2 ] && [ -n "$now" ] && ! echo ",$now," | grep -qE ",($(echo "$before" | tr ',' '|'))," && break
    sleep 0.2
  done
  echo "before $before; now $now"
  ! echo ",$now," | grep -qE ",($(echo "$before" | tr ',' '|'))," && [ "$(healthy_count)" = 2 ] || { "$Z" ps; return 1; }
  "$Z" up -d --timeout 60 specs/hello.yaml
}
export -f hello_ids restart_rolls
check "restart: every replica replaced by a healthy new one; up -d of the same spec after it" restart_rolls
# A reader that has gone (`| grep -q` that matched, `| head`): stdout is a
# pipe whose read end is closed before zlayer runs (perl-base is in every
# Debian). Before, println! panicked on the broken pipe and the command
# failed with 101.
gone_reader() {
  local f out rc
  for f in table json yaml; do
    out=$(perl -e 'pipe(my $r, my $w) or die; close $r; open(STDOUT, ">&", $w) or die; exec @ARGV' -- "$Z" ps -o "$f" 2>&1); rc=$?
    [ "$rc" = 0 ] && [ -z "$out" ] || { echo "ps -o $f into a closed pipe: exit $rc: $out"; return 1; }
  done
  out=$(perl -e 'pipe(my $r, my $w) or die; close $r; open(STDOUT, ">&", $w) or die; exec @ARGV' -- "$Z" image ls 2>&1); rc=$?
  [ "$rc" = 0 ] && [ -z "$out" ] || { echo "image ls into a closed pipe: exit $rc: $out"; return 1; }
}
export -f gone_reader
check "output into a pipe whose reader has gone ends quietly (no panic)" gone_reader
# The default balancing picks at random between the two (least outstanding,
# ties either way), so ask enough times that missing one is 2^-39 unlikely.
check "published port answers, both replicas serve" bash -c "for i in \$(seq 1 40); do curl -s -m 3 http://127.0.0.1:8080/; done | sort -u | grep -c 'hello from' | grep -q 2"
check "hello over HTTPS through the ingress, with the dev certificate, as the README shows" bash -c "
  '$Z' ca export > /tmp/e2e-ca.pem || exit 1
  for _ in \$(seq 1 50); do curl -s -m 3 --cacert /tmp/e2e-ca.pem --resolve hello.zlayer.test:443:127.0.0.1 https://hello.zlayer.test/ | grep -q 'hello from' && exit 0; sleep 0.1; done
  curl -sS -m 3 --cacert /tmp/e2e-ca.pem --resolve hello.zlayer.test:443:127.0.0.1 https://hello.zlayer.test/"
check "exec runs inside the replica" bash -c "'$Z' exec hello/1 -- /bin/sh -c 'hostname' | grep -q hello-1"
check "service DNS resolves by name" bash -c "'$Z' exec hello/2 -- nslookup hello-1 2>&1 | grep -A1 '^Name:' | grep -q \"Address: \$('$Z' ps -o json | grep -A6 '\"replica\": 1' | sed -n 's/.*\"ip\": \"\\(.*\\)\".*/\\1/p')\""
check "unknown service name is NXDOMAIN" bash -c "! '$Z' exec hello/2 -- nslookup nosuch-service >/dev/null 2>&1"
check "logs are prefixed per replica" bash -c "'$Z' logs --tail 5 hello | grep -q '^hello/1 | '"
check "metrics pass promtool" bash -c "curl -s -m 3 http://127.0.0.1:9464/metrics | tee /tmp/e2e.metrics | promtool check metrics && grep -q zlayer_container_memory_bytes /tmp/e2e.metrics"
check "missing image at up names file, line, key and fix" bash -c "sed 's/demo:latest/nosuch:1/; s/deployment: hello/deployment: other/; s/8080/8090/g; s/hello.zlayer.test/other.zlayer.test/' specs/hello.yaml > /tmp/e2e-missing.yaml; '$Z' up -d /tmp/e2e-missing.yaml 2>&1 | grep -q '/tmp/e2e-missing.yaml:9:13: services.hello.image.name: image .nosuch:1. is not in the local store; pull it with .zlayer image pull nosuch:1. or import it'"
check "bad spec rejected, running untouched" bash -c "! '$Z' up -d crates/zlayer-spec/tests/bad/04-negative-replicas.yaml && [ \$('$Z' ps -o json | grep -c '\"state\": \"running\"') -eq 2 ]"
shims() { pgrep -f "^[^ ]*zlayer shim $ZLAYER_DATA_DIR/" | wc -l; }
export -f shims; export Z
shims_before=$(shims)
pkill -9 -f "data-dir $ZLAYER_DATA_DIR node start"; sleep 0.3
check "containers outlive kill -9 of the node" bash -c "[ $shims_before -eq 2 ] && [ \$(shims) -eq 2 ]"
check "node restart re-adopts without duplicates" bash -c "'$Z' up -d specs/hello.yaml && [ \$('$Z' ps -o json | grep -c '\"restarts\": 0') -eq 2 ] && [ \$(shims) -eq 2 ]"
# A node killed between starting a shim and recording it leaves a container no record names;
# losing the records is the same situation, at scale.
unrecorded_swept() {
  local old; old=$(ls "$ZLAYER_DATA_DIR/containers")
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR node start"; sleep 0.3
  rm -rf "$ZLAYER_DATA_DIR/state"
  "$Z" up -d specs/hello.yaml >/dev/null || return 1
  local end=$((SECONDS+10))
  until [ "$(shims)" -eq 2 ] && ! ls "$ZLAYER_DATA_DIR/containers" | grep -qxF "$old"; do
    [ $SECONDS -lt $end ] || { echo "shims=$(shims) old=$old now=$(ls "$ZLAYER_DATA_DIR/containers")"; return 1; }; sleep 0.1; done
}
export -f unrecorded_swept
check "containers no record names are swept" bash -c unrecorded_swept
check "down removes everything" bash -c "'$Z' down hello && [ \$(find $ZLAYER_DATA_DIR/containers $ZLAYER_DATA_DIR/netns $ZLAYER_DATA_DIR/images/snapshots -mindepth 1 | wc -l) -eq 0 ] && [ \$(shims) -eq 0 ]"
cat > /tmp/e2e-oom.yaml <<'YAML'
version: v1
deployment: hog
services:
  hog:
    image: { name: demo:latest }
    env: { ALLOC_MB: "200", PORT: "8081" }
    resources: { memory: 32Mi }
YAML
oom_replica() {
  "$Z" up -d --timeout 5 /tmp/e2e-oom.yaml >/dev/null 2>&1
  local end=$((SECONDS+30))
  until "$Z" events | grep -E 'hog/hog +1 +oom +.*OOM killed' >/dev/null; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
  "$Z" ps | grep -E 'hog/hog' && "$Z" down hog >/dev/null
}
export -f oom_replica
check "OOM-killed replica is reported as OOM in events" bash -c oom_replica

cat > /tmp/e2e-deps.yaml <<'YAML'
version: v1
deployment: deps
services:
  db:
    image: { name: demo:latest }
    env: { PORT: "7000", SLOW_START: "1" }
    health:
      start_grace: 2s
      interval: 100ms
      retries: 1
      check: { type: command, command: ["/bin/sh", "-c", "netstat -ltn | grep -q ':7000 '"] }
  web:
    image: { name: demo:latest }
    env: { PORT: "7001" }
    depends: [{ service: db, condition: healthy }]
  crash:
    image: { name: demo:latest }
    env: { PORT: "7002", EXIT_AFTER: "0", EXIT_CODE: "3" }
YAML
# web may start only after db's command check (run inside db) passed; crash restarts with growing gaps.
deps_and_backoff() {
  "$Z" up -d --timeout 30 /tmp/e2e-deps.yaml >/dev/null 2>&1
  local end=$((SECONDS+30))
  until [ "$("$Z" ps -o json | jq '[.[] | select(.service=="crash") | .restarts] | max')" -ge 4 ] 2>/dev/null &&
        "$Z" ps -o json | jq -e '.[] | select(.service=="web" and .state=="running")' >/dev/null; do
    [ $SECONDS -lt $end ] || { "$Z" ps; return 1; }; sleep 0.2; done
  local ev; ev=$("$Z" events -o json)
  local healthy started
  healthy=$(echo "$ev" | jq '[.[] | select(.service=="db" and .kind=="health" and (.message|endswith("-> healthy")))][0].time_ms')
  started=$(echo "$ev" | jq '[.[] | select(.service=="web" and .kind=="started")][0].time_ms')
  echo "db healthy at $healthy, web started at $started"
  [ "$healthy" != null ] && [ "$started" != null ] && [ "$started" -ge "$healthy" ] || return 1
  # gaps between crash starts must grow (exponential backoff)
  echo "$ev" | jq -r '[.[] | select(.service=="crash" and .kind=="started") | .time_ms] | [range(1; length) as $i | .[$i] - .[$i-1]] | "gaps \(.)", (.[-1] > .[0] and .[-1] >= 2 * .[1])' | tee /dev/stderr | tail -1 | grep -q true
  local status; status=$("$Z" events | grep -m1 'crash.* exit ' )
  echo "$status"; echo "$status" | grep -q 'exited with code 3' || return 1
  "$Z" down deps >/dev/null
}
export -f deps_and_backoff
check "command health check, depends healthy, restart backoff with exit code" bash -c deps_and_backoff

# Leaks: 200 replica create/delete cycles (E2E_LEAK_CYCLES=100 up/downs of 2 replicas) and 200
# one-off runs (twice E2E_LEAK_CYCLES); scripts/test runs fewer in the slow cgroup v2 VM.
leftovers() {
  local cg mnt links ns snaps
  cg=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d -path '*/zlayer/*' 2>/dev/null | wc -l)
  mnt=$(grep -c "$ZLAYER_DATA_DIR" /proc/self/mountinfo)
  links=$(ip -o link | grep -cE ': z[lp][0-9a-f]{8}[@:]')
  ns=$(find "$ZLAYER_DATA_DIR/netns" -mindepth 1 2>/dev/null | wc -l)
  snaps=$(find "$ZLAYER_DATA_DIR/images/snapshots" -mindepth 1 -maxdepth 1 | wc -l)
  echo "cgroups=$cg mounts=$mnt veths=$links netns=$ns snapshots=$snaps replicas=$("$Z" ps -o json | jq length)"
}
leak_cycles() {
  # Probes every 50 ms so each cycle ends as soon as both replicas answer; the
  # start grace stays long, so a slow start (a TCG guest needs more than three
  # probes to listen) is not killed as unhealthy. A pass ends the grace at once.
  sed 's/start_grace: 1s/start_grace: 10s/; s/interval: 1s/interval: 50ms/' specs/hello.yaml > /tmp/e2e-leak.yaml
  local before; before=$(leftovers)
  for i in $(seq 1 "$LEAK_CYCLES"); do "$Z" up -d --timeout 30 /tmp/e2e-leak.yaml >/dev/null && "$Z" down hello >/dev/null || return 1; done
  for i in $(seq 1 $((2 * LEAK_CYCLES))); do "$Z" run --rm busybox -- /bin/true || return 1; done
  local after; after=$(leftovers)
  echo "before: $before"; echo "after:  $after"
  # Host-wide counters must not move; what lives under this data dir must be gone.
  [ "$before" = "$after" ] && [[ "$after" == *" mounts=0 "*" netns=0 snapshots=0 replicas=0" ]]
}
export -f leftovers leak_cycles
source tests/e2e-rollout.sh
source tests/e2e-cron.sh
source tests/e2e-secrets.sh
source tests/e2e-configs.sh
source tests/e2e-requests.sh
source tests/e2e-volumes.sh
source tests/e2e-probes.sh
source tests/e2e-events.sh
source tests/e2e-jobs.sh
source tests/e2e-metering.sh

export LEAK_CYCLES=${E2E_LEAK_CYCLES:-100}
check "no leaks after $((2 * LEAK_CYCLES)) replica and $((2 * LEAK_CYCLES)) run cycles" bash -c leak_cycles

echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
