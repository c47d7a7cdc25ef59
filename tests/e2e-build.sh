#!/usr/bin/env bash
# End-to-end tests of `zlayer build`: the images in images/ built and run,
# an unchanged rebuild served from the cache with the same digest, a fixture
# that uses every supported instruction (tests/fixtures/build), cache
# invalidation, build args, .dockerignore, RUN failures and refusals with
# their file:line:col, RUN without network, and a build killed mid-RUN.
# Needs: scripts/setup (zlayer; scripts/build-images staged the binaries the
# image contexts copy). Uses its own data dir; no node and no network.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
T=$(mktemp -d /tmp/zlayer-build.XXXX)
export ZLAYER_DATA_DIR=$T/data
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() {
  local name=$1; shift
  if "$@" >"$T/out" 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' "$T/out" | tail -25; fi
}
cleanup() {
  pkill -9 -f "data-dir $T" 2>/dev/null
  grep -o " $T/[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
for f in images/busybox/busybox images/demo/zlayer-demo; do
  [ -x "$f" ] || { echo "$f is missing: run scripts/build-images"; exit 1; }
done

# The fixture context, plus an archive for ADD to extract.
C=$T/ctx
cp -a tests/fixtures/build "$C"
mkdir -p "$T/bsrc/inner" && echo from-archive > "$T/bsrc/inner/file"
tar -C "$T/bsrc" -czf "$C/bundle.tar.gz" .

digest_of() { "$Z" image inspect "$1" | jq -r .digest; }
zrun() { "$Z" run "$@"; }
leftovers() {   # build snapshots, build containers or mounts left behind
  ls "$ZLAYER_DATA_DIR/images/snapshots" 2>/dev/null | grep -q '^build-' && { echo "snapshot left"; return 0; }
  grep -q "$ZLAYER_DATA_DIR/images/snapshots/build-" /proc/self/mountinfo && { echo "mount left"; return 0; }
  cat /sys/fs/cgroup/pids/zlayer/build-*/cgroup.procs 2>/dev/null | grep -q . && { echo "build container left running"; return 0; }
  ls "$ZLAYER_DATA_DIR/netns" 2>/dev/null | grep -q '^build-' && { echo "netns left"; return 0; }
  return 1
}

check "build images/busybox (FROM scratch, COPY, RUN) and run it" bash -c "
  '$Z' build -t busybox:latest images/busybox | tee $T/bb1 &&
  [ \"\$('$Z' run busybox -- sh -c 'ls /bin | wc -l')\" -gt 100 ] &&
  '$Z' run busybox -- sh -c 'test -d /tmp && test \"\$(stat -c %a /tmp)\" = 1777 && grep -q ^root: /etc/passwd'"
check "build images/demo (FROM busybox, .dockerignore, ARG/ENV/EXPOSE/ENTRYPOINT) and run it" bash -c "
  '$Z' build -t demo:latest images/demo &&
  '$Z' image inspect demo | jq -e '.config.config | .Entrypoint == [\"/usr/local/bin/zlayer-demo\"] and .Cmd == null and .ExposedPorts == {\"8080/tcp\":{}} and (.Env | index(\"PORT=8080\")) != null' &&
  '$Z' run demo -- sh -c '/usr/local/bin/zlayer-demo & for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/health && exit 0; sleep 0.2; done; exit 1' &&
  [ \"\$('$Z' run demo -- ls /usr/local/bin)\" = zlayer-demo ]"
check "unchanged rebuild: every step cached, same digest" bash -c "
  d1=\$(digest_of busybox); s=\$(date +%s%N)
  '$Z' build -t busybox:latest images/busybox > $T/bb2 || exit 1
  echo \"rebuild took \$(( (\$(date +%s%N) - s) / 1000000 )) ms\"
  ! grep -q 'new layer' $T/bb2 && [ \"\$(grep -c -- '--> cached' $T/bb2)\" = 3 ] && [ \"\$(digest_of busybox)\" = \"\$d1\" ]"
export -f digest_of leftovers; export Z

check "fixture: every instruction builds" "$Z" build -t build-fixture:latest "$C"
check "fixture: CMD shell form under SHELL, ENV expanded from ARG" bash -c "[ \"\$('$Z' run build-fixture)\" = 'cmd: hello world' ]"
check "fixture: config has USER, WORKDIR, EXPOSE, LABEL, STOPSIGNAL, VOLUME" bash -c "
  '$Z' image inspect build-fixture | jq -e '.config.config |
    .User == \"app:app\" and .WorkingDir == \"/srv/app\" and .StopSignal == \"SIGINT\" and
    .ExposedPorts == {\"8080/tcp\":{},\"9090/udp\":{}} and .Volumes == {\"/data\":{}} and
    .Labels[\"com.example.flavour\"] == \"test\" and .Labels[\"com.example.multi word\"] == \"yes\" and
    .Cmd == [\"/bin/sh\",\"-ec\",\"echo \\\"cmd: \$GREETING_ENV\\\"\"]'"
check "fixture: COPY --chown, dir contents, symlinks, globs; USER in RUN" bash -c "
  out=\$('$Z' run build-fixture -- sh -c 'id -u; stat -c \"%U:%G\" hello.txt sub/nested.txt; readlink link; cat /tmp/whoami; cat built.txt')
  echo \"\$out\"; [ \"\$out\" = \"\$(printf '1500\napp:app\napp:app\nhello.txt\n1500\nhello from RUN in /srv/app')\" ]"
check "fixture: .dockerignore (excluded, re-included)" bash -c "
  '$Z' run build-fixture -- sh -c 'ls /logs; test ! -e /srv/app/secret.txt' > $T/ls && [ \"\$(cat $T/ls)\" = keep.log ] &&
  ! '$Z' build -f - $C <<< \$'FROM busybox\nCOPY secret.txt /x' > $T/ex 2>&1 && grep -q 'secret.txt. is excluded by .dockerignore' $T/ex"
check "fixture: --chmod, ADD extracts a local archive and copies a plain file" bash -c "
  [ \"\$('$Z' run build-fixture -- sh -c 'stat -c %a /usr/local/bin/run.sh; run.sh; cat /opt/bundle/inner/file /opt/notes.txt')\" = \"\$(printf '755\nrun.sh as 1500\nfrom-archive\nplain notes')\" ]"
check "fixture: RUN deletions are whiteouts, a replaced dir is opaque" bash -c "
  [ \"\$('$Z' run build-fixture -- sh -c 'test -e /bin/vi && echo vi; ls /data/old')\" = b ]"
check "ENTRYPOINT shell form resets the inherited CMD (SHELL is not inherited: OCI has no field); exec forms combine" bash -c "
  '$Z' build -f $C/Dockerfile.entrypoint -t fixture-entry $C >/dev/null &&
  '$Z' image inspect fixture-entry | jq -e '.config.config | .Cmd == null and .Entrypoint == [\"/bin/sh\",\"-c\",\"echo \\\"entry: \$GREETING_ENV\\\"\"]' &&
  [ \"\$('$Z' run fixture-entry)\" = 'entry: hello world' ] &&
  '$Z' build -f $C/Dockerfile.exec -t fixture-exec $C >/dev/null && [ \"\$('$Z' run fixture-exec)\" = 'exec: one two' ]"
check "an edited file rebuilds its COPY and what follows, not what precedes" bash -c "
  echo changed > $C/app/hello.txt
  '$Z' build -t build-fixture:latest $C > $T/re || exit 1
  after() { grep -A1 \"STEP \$1/22:\" $T/re | tail -1; }
  after 5 | grep -q cached && after 6 | grep -q cached &&
  for n in 7 8 12 14 16; do after \$n | grep -q 'new layer' || exit 1; done &&
  [ \"\$('$Z' run build-fixture -- cat link)\" = changed ]"
check "--build-arg overrides an ARG default; an unused one is warned about" bash -c "
  '$Z' build --build-arg GREETING=hey --build-arg NOPE=1 -t fixture-hey $C > $T/ba || exit 1
  grep -q 'build arg .NOPE. was not used' $T/ba && [ \"\$('$Z' run fixture-hey -- cat built.txt)\" = 'hey from RUN in /srv/app' ] &&
  [ \"\$('$Z' run fixture-hey)\" = 'cmd: hey world' ]"
check "RUN --network none sees only loopback" bash -c "
  printf 'FROM busybox\nRUN ls /sys/class/net > /nets\n' > $T/Dockerfile.net &&
  '$Z' build --network none -f $T/Dockerfile.net -t nets $T/ctx >/dev/null && [ \"\$('$Z' run nets -- cat /nets)\" = lo ]"
check "RUN gets a private network namespace by default; the host's only with --network host" bash -c "
  '$Z' build -f $T/Dockerfile.net -t netdefault $T/ctx >/dev/null && [ \"\$('$Z' run netdefault -- cat /nets)\" = lo ] &&
  '$Z' build --no-cache --network host -f $T/Dockerfile.net -t nethost $T/ctx >/dev/null && [ \"\$('$Z' run nethost -- cat /nets)\" != lo ]"
check "a failing RUN: file:line:col, its exit code, no tag and nothing left behind" bash -c "
  printf 'FROM busybox\nRUN echo partial > /p\n  RUN echo boom >&2; exit 3\n' > $T/Dockerfile.fail
  ! '$Z' build -f $T/Dockerfile.fail -t failed $T/ctx > $T/f 2>&1 || exit 1; cat $T/f
  grep -q \"^error: $T/Dockerfile.fail:3:3: the command .* failed: exited with code 3\" $T/f && grep -q boom $T/f &&
  ! '$Z' image inspect failed >/dev/null 2>&1 && ! leftovers"
check "-q hides RUN output unless it fails, and prints the digest" bash -c "
  printf 'FROM busybox\nRUN echo noisy-output\n' > $T/Dockerfile.q &&
  out=\$('$Z' build -q --no-cache -f $T/Dockerfile.q -t quiet $T/ctx) && echo \"\$out\" &&
  [ \"\$out\" = \"\$(digest_of quiet)\" ] && ! grep -q noisy <<< \"\$out\" &&
  printf 'FROM busybox\nRUN echo shown-on-failure; exit 1\n' > $T/Dockerfile.qf &&
  ! '$Z' build -q -f $T/Dockerfile.qf $T/ctx > $T/qf 2>&1 && grep -q shown-on-failure $T/qf"
bad() {   # bad NAME DOCKERFILE-TEXT EXPECTED-MESSAGE (after `error: <file>:`)
  printf "$2" > "$T/Dockerfile.bad"
  printf '%s' "error: $T/Dockerfile.bad:$3" > "$T/expect"
  check "refused: $1" bash -c "! '$Z' build -f $T/Dockerfile.bad -t bad $C > $T/b 2>&1; cat $T/b; grep -qF -f $T/expect $T/b && ! '$Z' image inspect bad >/dev/null 2>&1"
}
bad "unknown instruction" 'FROM busybox\nFROBNICATE x\n' "2:1: unknown instruction"
bad "COPY from outside the context" 'FROM busybox\nCOPY ../etc/passwd /x\n' "2:1: \`../etc/passwd\` is outside the build context"
bad "a source that is not there" 'FROM busybox\nCOPY nope.txt /x\n' "2:1: \`nope.txt\` is not in the build context"
bad "several sources into a file" 'FROM busybox\nCOPY notes.txt run.sh /x\n' "2:1: with more than one source the destination must be a directory"
bad "a base image that is not local" 'FROM nosuch:1\n' "1:1: image \`nosuch:1\` is not in the local store"
bad "multi-stage" 'FROM busybox AS a\nFROM busybox\n' "2:1: a second FROM: multi-stage builds are not supported"
bad "an unknown --chown user" 'FROM busybox\nCOPY --chown=ghost notes.txt /x\n' "2:1: --chown: user \`ghost\` is not in the image"
bad "a bad EXPOSE" 'FROM busybox\nEXPOSE 99999\n' "2:1: EXPOSE \`99999\`: not a port number"
bad "a bad variable" 'FROM busybox\nENV A=${B/x/y}\n' "2:1: unsupported variable modifier"
check "refused: a context without a Dockerfile, once, with the fix" bash -c "
  ! '$Z' build $C/app > $T/nd 2>&1; cat $T/nd; [ \"\$(cat $T/nd)\" = \"error: no Dockerfile at $C/app/Dockerfile: pass -f FILE, or put a Dockerfile in the build context\" ]"
check "a build killed during RUN is cleaned up by the next build" bash -c "
  printf 'FROM busybox\nRUN sleep 60\n' > $T/Dockerfile.kill
  '$Z' build -f $T/Dockerfile.kill $T/ctx > /dev/null 2>&1 & pid=\$!
  pids=
  for i in \$(seq 50); do
    pids=\$(cat /sys/fs/cgroup/pids/zlayer/build-\$pid-*/cgroup.procs 2>/dev/null)
    [ -n \"\$pids\" ] && break; sleep 0.1
  done
  [ -n \"\$pids\" ] || { echo 'the RUN never started'; exit 1; }
  kill -9 \$pid; wait \$pid 2>/dev/null; leftovers || { echo 'nothing was left to clean'; exit 1; }
  '$Z' build -t busybox:latest images/busybox >/dev/null && ! leftovers || exit 1
  for p in \$pids; do   # a zombie is dead (pid 1 may not reap here)
    [ ! -e /proc/\$p ] || grep -q '^State:.*Z' /proc/\$p/status || { echo \"RUN process \$p still alive\"; exit 1; }
  done"

echo "e2e-build: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
