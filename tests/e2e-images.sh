#!/usr/bin/env bash
# End-to-end tests of images: pulls from Debian's docker-registry on loopback
# (Docker v2s2, OCI, multi-platform index, gzip/zstd/uncompressed layers, by
# digest), auth (htpasswd, `zlayer login`, ~/.docker/config.json), a
# tampered blob, a registry killed mid-pull, save/import, push, prune and
# pull_policy. Registries listen on 127.0.0.1:5101-5102 and, for the resume
# test, inside a network namespace this script creates (10.232.0.0/30).
# Needs: scripts/setup (zlayer, test images, docker-registry, skopeo,
# apache2-utils, zstd, iproute2). No host name outside this machine is used.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
T=$(mktemp -d /tmp/zlayer-img.XXXX)
export REG_ROOT=$T/registries ZLAYER_DATA_DIR=$T/node ZLAYER_AUTH_FILE=$T/auth.json HOME=$T/home
mkdir -p "$HOME"
source tests/lib/registry.sh
NS=zlreg$$
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() {   # every check's output is also kept in $T/all.log (the credentials check reads it)
  local name=$1; shift
  if "$@" >"$T/out" 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' "$T/out" | tail -20; fi
  cat "$T/out" >> "$T/all.log"
}
cleanup() {
  "$Z" down pulled >/dev/null 2>&1; "$Z" node stop >/dev/null 2>&1
  for r in plain auth slow; do stop_registry $r; done
  ip netns del "$NS" 2>/dev/null; ip link del zlregh0 2>/dev/null
  pkill -9 -f "data-dir $T" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
P=127.0.0.1:5101 A=127.0.0.1:5102
htpasswd -Bbn alice s3cret-pw > "$T/htpasswd" 2>/dev/null
start_registry plain $P || exit 1
start_registry auth $A "$T/htpasswd" || exit 1

# Sources: the test images as an OCI layout, random-content images, and two indexes.
L=$T/layout
skopeo copy -q oci-archive:images/out/busybox.tar oci:$L:busybox
skopeo copy -q oci-archive:images/out/demo.tar oci:$L:demo
scripts/make-test-image $L big 3 8 gzip >/dev/null
scripts/make-test-image $L zst 1 2 zstd >/dev/null
scripts/make-test-image $L raw 1 2 none >/dev/null
manifest_of() { jq -r --arg n "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$n) | .digest' $L/index.json; }
add_index() {   # add_index NAME ARCH=REF...: an OCI index over existing manifests
  local name=$1 entries="" d; shift
  for pair in "$@"; do
    d=$(manifest_of "${pair#*=}")
    entries+=$(jq -nc --arg d "$d" --argjson s "$(stat -c%s $L/blobs/sha256/${d#sha256:})" --arg a "${pair%%=*}" \
      '{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$d,size:$s,platform:{os:"linux",architecture:$a}}'),
  done
  echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[${entries%,}]}" > $T/index.blob
  d=$(sha256sum $T/index.blob | cut -d' ' -f1); mv $T/index.blob $L/blobs/sha256/$d
  jq --arg d "sha256:$d" --argjson s "$(stat -c%s $L/blobs/sha256/$d)" --arg n "$name" \
    '.manifests += [{mediaType:"application/vnd.oci.image.index.v1+json",digest:$d,size:$s,annotations:{"org.opencontainers.image.ref.name":$n}}]' \
    $L/index.json > $T/i.json && mv $T/i.json $L/index.json
}
add_index multi arm64=busybox amd64=demo
add_index armonly arm64=busybox s390x=busybox
sk() { skopeo copy -q --dest-tls-verify=false "$@"; }
export -f sk
sk --format v2s2 oci:$L:busybox docker://$P/busybox:v2s2
sk --format oci oci:$L:busybox docker://$P/busybox:oci
sk --format oci oci:$L:demo docker://$P/demo:oci
sk --all oci:$L:multi docker://$P/multi:1
sk --all oci:$L:armonly docker://$P/armonly:1
sk oci:$L:big docker://$P/big:1
curl_push $L zst $P zst:1
curl_push $L raw $P raw:1
sk --dest-creds alice:s3cret-pw oci:$L:busybox docker://$A/private:1
DEMO=$(manifest_of demo)

mt() { curl -s -H "Accept: $2" "http://$P/v2/$1" | jq -r '.mediaType, (.layers // [] | .[].mediaType)' | sort -u | tr '\n' ' '; }
check "sources are in the forms under test" bash -c "
  echo \"$(mt busybox/manifests/v2s2 application/vnd.docker.distribution.manifest.v2+json)\" | grep -q 'docker.distribution.manifest.v2' &&
  echo \"$(mt multi/manifests/1 application/vnd.oci.image.index.v1+json)\" | grep -q 'image.index' &&
  echo \"$(mt zst/manifests/1 application/vnd.oci.image.manifest.v1+json)\" | grep -q 'tar+zstd' &&
  echo \"$(mt raw/manifests/1 application/vnd.oci.image.manifest.v1+json)\" | grep -q 'layer.v1.tar '"

check "pull a Docker v2s2 image and run it" bash -c "'$Z' pull $P/busybox:v2s2 && '$Z' run --rm $P/busybox:v2s2 -- /bin/sh -c 'echo pulled-ok' | grep -q pulled-ok"
check "pull an OCI image; layers already stored are not fetched again" bash -c "n=\$(ls $ZLAYER_DATA_DIR/images/layers | wc -l); [ \$n -gt 0 ] && '$Z' pull $P/busybox:oci | grep -q \"\$n layers, \$n already stored\" && [ \$(ls $ZLAYER_DATA_DIR/images/layers | wc -l) -eq \$n ]"
check "pull an index: this node's platform is chosen" bash -c "'$Z' pull $P/multi:1 | tee /dev/stderr | grep -q 'pulled $P/multi:1 ($DEMO, linux/amd64 from index sha256:'"
check "pull zstd and uncompressed layers" bash -c "'$Z' pull -q $P/zst:1 && '$Z' pull -q $P/raw:1 && ls $ZLAYER_DATA_DIR/images/layers/*/data/zst-1.bin $ZLAYER_DATA_DIR/images/layers/*/data/raw-1.bin"
check "pull by digest is pinned" bash -c "sk oci:$L:busybox docker://$P/demo:oci && '$Z' pull -o json $P/demo@$DEMO | jq -e '.digest == \"$DEMO\"' && '$Z' image ls | grep -q '$P/demo@$DEMO'"
check "pull of 3 layers in parallel, progress lines when not a TTY" bash -c "'$Z' pull $P/big:1 2>&1 | tee /dev/stderr | grep -c ': unpacked' | grep -qx 3"
check "no manifest for this platform: says which exist" bash -c "'$Z' pull $P/armonly:1 2>&1 | tee /dev/stderr | grep -q 'no manifest for this node.s platform linux/amd64 (the registry offers: linux/arm64, linux/s390x)'"
check "not found" bash -c "'$Z' pull $P/nosuch:1 2>&1 | grep -q 'was not found in registry $P'"
check "unreachable" bash -c "'$Z' pull 127.0.0.1:5109/x:1 2>&1 | grep -q 'registry 127.0.0.1:5109 is unreachable'"
check "unauthorized without credentials" bash -c "'$Z' pull $A/private:1 2>&1 | grep -q 'registry $A refused access to .$A/private:1. (HTTP 401/403): it needs credentials: run .zlayer login $A.'"
check "login with a wrong password is refused and nothing is stored" bash -c "! echo wrong | '$Z' login $A -u alice --password-stdin 2>&1 | tee /dev/stderr | grep -q succeeded && [ ! -e $ZLAYER_AUTH_FILE ]"
check "login, then pull with the stored credentials (file mode 0600)" bash -c "echo s3cret-pw | '$Z' login $A -u alice --password-stdin && [ \$(stat -c %a $ZLAYER_AUTH_FILE) = 600 ] && '$Z' pull $A/private:1"
check "~/.docker/config.json is read; wrong stored credentials are named" bash -c "
  '$Z' logout $A && mkdir -p $HOME/.docker &&
  echo '{\"auths\":{\"$A\":{\"auth\":\"'\$(printf alice:s3cret-pw | base64)'\"}}}' > $HOME/.docker/config.json &&
  '$Z' image rm $A/private:1 && '$Z' pull -q $A/private:1 &&
  echo '{\"auths\":{\"$A\":{\"auth\":\"'\$(printf alice:nope | base64)'\"}}}' > $HOME/.docker/config.json &&
  '$Z' image rm $A/private:1 && '$Z' pull $A/private:1 2>&1 | grep -q 'the stored credentials were rejected'"
check "credentials never appear in output or logs" bash -c "grep -q 'login succeeded' $T/all.log && grep -q 'registry $A refused access' $T/all.log && ! grep -rq 's3cret-pw' $T/all.log $ZLAYER_DATA_DIR $REG_ROOT/*/log"

tamper() {
  local d layer f
  sk oci:$L:zst docker://$P/tamper:1
  layer=$(jq -r '.layers[0].digest' $L/blobs/sha256/$(manifest_of zst | cut -d: -f2))
  f=$(blob_file plain "$layer"); cp "$f" $T/orig.blob
  printf 'X' | dd of="$f" bs=1 seek=1000 conv=notrunc 2>/dev/null
  d=$T/tamper-node
  ZLAYER_DATA_DIR=$d "$Z" pull $P/tamper:1 2>&1 | tee /dev/stderr | grep -q "blob $layer: the content hashes to sha256:.*rejected" || return 1
  cp $T/orig.blob "$f"
  # nothing of the layer is kept: no blob, no unpacked layer, no temporary file, no tag
  [ ! -e $d/images/blobs/sha256/${layer#sha256:} ] && [ -z "$(find $d/images/layers $d/images/tmp -mindepth 1)" ] &&
    ! ZLAYER_DATA_DIR=$d "$Z" image ls | grep -q tamper
}
export -f tamper manifest_of blob_file sk; export Z P L T REG_ROOT
check "a tampered blob is rejected and nothing of it is kept" bash -c tamper

# A registry in its own namespace behind a 40 Mbit/s link, so a 24 MB pull
# takes seconds; it is killed mid-pull and restarted, and the pull resumes.
slow_registry() {
  ip netns add $NS && ip link add zlregh0 type veth peer name zlregn0 netns $NS &&
  ip addr add 10.232.0.1/30 dev zlregh0 && ip link set zlregh0 up &&
  ip -n $NS addr add 10.232.0.2/30 dev zlregn0 && ip -n $NS link set zlregn0 up && ip -n $NS link set lo up &&
  ip netns exec $NS tc qdisc add dev zlregn0 root tbf rate 40mbit burst 64kb latency 2s || return 1
  cp -a $REG_ROOT/plain $REG_ROOT/slow
  REG_NETNS=$NS start_registry slow 10.232.0.2:5000
}
export -f slow_registry start_registry stop_registry; export NS
check "a registry in a network namespace, behind a 40 Mbit/s link" bash -c slow_registry
check "plain HTTP only for loopback unless the registry is named insecure" bash -c "ip netns exec $NS true && '$Z' pull 10.232.0.2:5000/big:1 2>&1 | tee /dev/stderr | grep -q 'https://10.232.0.2:5000.*pass --insecure-registry HOST:PORT'"
killed_mid_pull() {
  local d=$T/resume-node
  ZLAYER_DATA_DIR=$d "$Z" pull --insecure-registry 10.232.0.2:5000 10.232.0.2:5000/big:1 > $T/resume.log 2>&1 &
  local pull=$! end=$((SECONDS+20))
  until [ "$(du -sm $d/images/tmp 2>/dev/null | cut -f1)" -ge 4 ] 2>/dev/null; do
    [ $SECONDS -lt $end ] || { echo "pull never got going"; cat $T/resume.log; return 1; }; sleep 0.05; done
  stop_registry slow; sleep 1
  REG_NETNS=$NS start_registry slow 10.232.0.2:5000 || return 1
  wait $pull; local rc=$?
  cat $T/resume.log
  [ $rc -eq 0 ] && grep -qE 'broke at byte [1-9][0-9]* .*resuming' $T/resume.log &&
    [ "$(ZLAYER_DATA_DIR=$d "$Z" image ls -o json | jq -r '.[0].digest')" = "$(manifest_of big)" ]
}
export -f killed_mid_pull
check "registry killed mid-pull, restarted: the pull resumes and completes" bash -c killed_mid_pull

# A 1 GiB layer (uncompressed, so 1 GiB crosses the wire) pulls with bounded memory.
big_layer_rss() {
  scripts/make-test-image $T/huge huge 1 1024 none >/dev/null && curl_push $T/huge huge $P huge:1 && rm -rf $T/huge || return 1
  env ZLAYER_DATA_DIR=$T/huge-node /usr/bin/time -f '%M' -o $T/rss "$Z" pull -q $P/huge:1 || return 1
  echo "peak RSS $(cat $T/rss) KiB"
  [ "$(cat $T/rss)" -lt $((100 * 1024)) ] && [ "$(stat -c %s $T/huge-node/images/layers/*/data/huge-1.bin)" -eq $((1024 * 1024 * 1024)) ]
  local rc=$?; rm -rf $T/huge-node; return $rc
}
export -f big_layer_rss curl_push
check "a 1 GiB layer pulls with the process under 100 MiB RSS" bash -c big_layer_rss

save_import() {
  "$Z" image save $P/busybox:v2s2 $P/big:1 $P/multi:1 -o $T/saved.tar &&
  ZLAYER_DATA_DIR=$T/airgap "$Z" image import $T/saved.tar &&
  diff <("$Z" image ls -o json | jq -c '[.[] | select(.name | test("busybox:v2s2|big:1|multi:1")) | {name, digest}]') \
       <(ZLAYER_DATA_DIR=$T/airgap "$Z" image ls -o json | jq -c '[.[] | {name, digest}]') &&
  ZLAYER_DATA_DIR=$T/airgap "$Z" run --rm $P/busybox:v2s2 -- /bin/true
}
export -f save_import
check "save, import into a second data dir: same names and digests, runs" bash -c save_import

push_back() {
  "$Z" image import images/out/demo.tar >/dev/null &&
  "$Z" push demo:latest $P/pushed/demo:1 | tee /dev/stderr | grep -q "pushed $P/pushed/demo:1" &&
  local local_d; local_d=$("$Z" image ls -o json | jq -r '.[] | select(.name=="demo:latest") | .digest') &&
  [ "$(skopeo inspect --tls-verify=false --raw docker://$P/pushed/demo:1 | sha256sum | cut -d' ' -f1)" = "${local_d#sha256:}" ] &&
  local blobs=$(( $("$Z" image inspect demo:latest | jq '.layers | length') + 1 )) &&
  "$Z" push demo:latest $P/pushed/demo:2 | grep -q "$blobs blobs, $blobs already in the registry" &&
  ZLAYER_DATA_DIR=$T/third "$Z" pull -o json $P/pushed/demo:1 | jq -e ".digest == \"$local_d\""
}
export -f push_back
check "push a local image; the registry has the same digest; pull it back" bash -c push_back
check "push to a registry that needs auth, with stored credentials" bash -c "'$Z' logout $A >/dev/null; rm -f $HOME/.docker/config.json; ! '$Z' push demo:latest $A/mine:1 2>/dev/null && echo s3cret-pw | '$Z' login $A -u alice --password-stdin && '$Z' push demo:latest $A/mine:1"

prune() {
  "$Z" run $P/busybox:v2s2 -- /bin/sh -c 'trap "exit 0" TERM; sleep 30 & wait' & local run=$!
  local end=$((SECONDS+10))
  until "$Z" image ls -o json | jq -e ".[] | select(.name==\"$P/busybox:v2s2\") | .containers == 1" >/dev/null; do
    [ $SECONDS -lt $end ] || return 1; sleep 0.1; done
  # big:1 moves to other content: its old manifest, config and 3 layers are left dangling
  sk oci:$L:zst docker://$P/big:1 && "$Z" pull -q $P/big:1 &&
    "$Z" image prune | tee /dev/stderr | grep -q 'removed 5 blobs and 3 layers' || return 1
  "$Z" image prune --all | tee /dev/stderr | grep -q "untagged $P/multi:1" || return 1
  # the image a running container uses is kept, layers and all
  "$Z" image ls | tee /dev/stderr | grep -q "$P/busybox:v2s2" && [ "$("$Z" image ls -o json | jq length)" -eq 1 ] || return 1
  kill $run; wait $run   # zlayer run passes SIGTERM on to the container and removes it
  "$Z" run --rm $P/busybox:v2s2 -- /bin/true && [ -z "$(ls $ZLAYER_DATA_DIR/images/snapshots)" ]
}
export -f prune
check "prune removes what nothing uses and keeps what a container runs" bash -c prune

cat > $T/pulled.yaml <<YAML
version: v1
deployment: pulled
services:
  web:
    image: { name: $P/demo:oci, pull_policy: if_not_present }
    env: { PORT: "8080" }
YAML
check "pull_policy: up pulls what the node lacks" bash -c "sk oci:$L:demo docker://$P/demo:oci && ZLAYER_DATA_DIR=$T/policy '$Z' up -d --timeout 60 $T/pulled.yaml && ZLAYER_DATA_DIR=$T/policy '$Z' ps | grep -q running; ZLAYER_DATA_DIR=$T/policy '$Z' down pulled; ZLAYER_DATA_DIR=$T/policy '$Z' node stop"
check "pull_policy: never refuses a missing image with file, line and key" bash -c "sed 's/if_not_present/never/; s/demo:oci/demo:absent/' $T/pulled.yaml > $T/never.yaml; ZLAYER_DATA_DIR=$T/policy2 '$Z' up -d $T/never.yaml 2>&1 | grep -q '$T/never.yaml:5:13: services.web.image.name: image .$P/demo:absent. is not in the local store'; ZLAYER_DATA_DIR=$T/policy2 '$Z' node stop"

# Hostile layers (tests/make-hostile-layer), pulled from the registry: each
# is refused with its own message, or confined to the layer, and nothing
# outside the store changes.
mkdir -p $T/host/sub && echo keep > $T/host/victim && echo keep > $T/host/sub/inner
hostile() { # $1: kind, $2: image name, $3: compression
  tests/make-hostile-layer "$1" $T/$2.tar $T/host &&
    LAYER_TAR=$T/$2.tar scripts/make-test-image $L $2 1 0 "${3:-gzip}" >/dev/null &&
    sk oci:$L:$2 docker://$P/$2:1
}
host_intact() {
  [ "$(cat $T/host/victim)" = keep ] && [ "$(cat $T/host/sub/inner)" = keep ] && [ -z "$(find $T/host -name planted)" ] &&
    [ -z "$(getfattr -m - -d $T/host/sub 2>/dev/null)" ] && [ -z "$(ls -A $ZLAYER_DATA_DIR/images/tmp)" ]
}
refused_layer() { # $1: image, $2: the exact refusal
  local out; out=$("$Z" pull $P/$1:1 2>&1); echo "$out"
  # The image's name, not a bare "$1": `dd` is also in about 1 digest in 12.
  echo "$out" | grep -qF "$2" && host_intact && ! "$Z" image ls | grep -qF "/$1:1"
}
export -f hostile host_intact refused_layer
check "a layer's absolute symlink to a host dir + whiteout + opaque marker: refused, the host dir untouched" bash -c "
  hostile symlink-whiteout sw && refused_layer sw 'archive entry \`x/.wh.victim\` is under \`x\`, which leads to no directory inside the layer'"
check "a layer entry named ../../… is refused" bash -c "hostile dotdot dd &&
  refused_layer dd 'archive entry \`../..$T/host/planted\` escapes the layer (path traversal); refusing to unpack'"
check "a whiteout with no name is refused" bash -c "hostile bad-whiteout bw &&
  refused_layer bw 'archive entry \`a/.wh.\` is a whiteout with no name (or \`.\`/\`..\`) after \`.wh.\`; refusing to unpack'"
check "gzip and zstd bombs fail at the layer limit and leave no partial layer" bash -c "
  hostile bomb gz gzip && hostile bomb zs zstd && before=\$(ls $ZLAYER_DATA_DIR/images/layers | wc -l) &&
  ZLAYER_MAX_LAYER_BYTES=8388608 refused_layer gz 'layer exceeds its limit of 8388608 bytes uncompressed; refusing it (nothing of it was kept)' &&
  ZLAYER_MAX_LAYER_BYTES=8388608 refused_layer zs 'layer exceeds its limit of 8388608 bytes uncompressed' &&
  [ \$(ls $ZLAYER_DATA_DIR/images/layers | wc -l) = \$before ]"

echo "e2e-images: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
