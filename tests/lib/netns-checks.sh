# What the multi-node suites share: their cluster's names and data dir,
# PASS/FAIL bookkeeping, the node CLI on scripts/netns-cluster, and a bounded
# retry. Source it from the repository root with the suite's name as the
# argument (the prefix of its namespaces, zlc by default):
#   source tests/lib/netns-checks.sh zlo
# CHECK_OUT names the file a check's output goes to (default /tmp/netns-check-PREFIX.out).
export ZLC_NS=${1:-zlc}
# A cluster a killed run left behind under these names goes first.
ZLC_DIR=/tmp/$ZLC_NS-stale scripts/netns-cluster down >/dev/null 2>&1
ZLC_DIR=$(mktemp -d "/tmp/$ZLC_NS.XXXX"); export ZLC_DIR
export ZLAYER=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$ZLAYER" ] || ZLAYER=$(command -v zlayer)
CHECK_OUT=${CHECK_OUT:-/tmp/netns-check-$ZLC_NS.out}
NC=scripts/netns-cluster
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
# CHECK_SHOW=1 prints a passing check's output too (for the figures it prints).
check() { local name=$1; shift; if "$@" >"$CHECK_OUT" 2>&1; then ok "$name"; [ -z "${CHECK_SHOW:-}" ] || sed 's/^/    /' "$CHECK_OUT" | tail -25; else ko "$name"; sed 's/^/    /' "$CHECK_OUT" | tail -25; fi; }
z() { $NC z "$@"; }
# Retries `cmd` every 0.2 s, at most N times: a bound against hanging, not a timing assertion.
eventually() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
