# What the multi-node suites share: PASS/FAIL bookkeeping, the node CLI on
# scripts/netns-cluster, and a bounded retry. Set CHECK_OUT (a file for a
# check's output) before sourcing.
NC=scripts/netns-cluster
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
# CHECK_SHOW=1 prints a passing check's output too (for the figures it prints).
check() { local name=$1; shift; if "$@" >"$CHECK_OUT" 2>&1; then ok "$name"; [ -z "${CHECK_SHOW:-}" ] || sed 's/^/    /' "$CHECK_OUT" | tail -25; else ko "$name"; sed 's/^/    /' "$CHECK_OUT" | tail -25; fi; }
z() { $NC z "$@"; }
# Retries `cmd` every 0.2 s, at most N times: a bound against hanging, not a timing assertion.
eventually() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
