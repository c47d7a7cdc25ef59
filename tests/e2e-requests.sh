# resources.requests, sourced by tests/e2e.sh (uses its $Z, check and data dir):
# the scheduler reserves the request, the cgroup enforces the limit.
cat > /tmp/e2e-req.yaml <<'YAML'
version: v1
deployment: req
services:
  big:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    resources: { cpu: 64, memory: 48Mi, requests: { cpu: 0.1, memory: 16Mi } }
YAML
requests_reserve_limits_enforce() {
  # 64 cores as a request: no node has them, so the replica waits with the reason.
  sed 's/, requests: { cpu: 0.1, memory: 16Mi }//' /tmp/e2e-req.yaml > /tmp/e2e-req-limits-only.yaml
  "$Z" up -d --timeout 3 /tmp/e2e-req-limits-only.yaml >/dev/null 2>&1
  "$Z" ps | grep 'req/big' | grep -q 'pending' || { "$Z" ps; return 1; }
  "$Z" up -d --timeout 60 /tmp/e2e-req.yaml || return 1
  local id; id=$("$Z" ps -o json | jq -r '.[] | select(.deployment=="req") | .container_id')
  local got
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    got="$(cat /sys/fs/cgroup/zlayer/$id/cpu.max) $(cat /sys/fs/cgroup/zlayer/$id/memory.max)"
  else
    got="$(cat /sys/fs/cgroup/cpu/zlayer/$id/cpu.cfs_quota_us) 100000 $(cat /sys/fs/cgroup/memory/zlayer/$id/memory.limit_in_bytes)"
  fi
  echo "cgroup: $got"
  [ "$got" = "6400000 100000 50331648" ] || return 1
  "$Z" down req >/dev/null
}
export -f requests_reserve_limits_enforce
check "resources.requests: the scheduler reserves the request (64 cores as a request wait), the cgroup enforces the limit" bash -c requests_reserve_limits_enforce
