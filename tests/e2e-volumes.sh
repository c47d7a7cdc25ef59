# Named volumes, sourced by tests/e2e.sh (uses its $Z, check and data dir).
cat > /tmp/e2e-vol.yaml <<'YAML'
version: v1
deployment: vol
services:
  ledger:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    storage:
      - { type: named, name: data, target: /data, size: 16Mi }
      - { type: named, name: scratch, target: /scratch }
YAML
# The same volume names in another deployment are other volumes.
sed 's/deployment: vol/deployment: vol2/; s/ledger:/books:/' /tmp/e2e-vol.yaml > /tmp/e2e-vol2.yaml

vol_json() { "$Z" volume inspect "$1" 2>/dev/null; }
vol_mounts() { grep -c " $ZLAYER_DATA_DIR/named-volumes/" /proc/mounts; }

volumes_kept() {
  "$Z" up -d --timeout 60 /tmp/e2e-vol.yaml || return 1
  "$Z" exec ledger/1 -- /bin/sh -c 'echo entry-1 > /data/ledger && echo s > /scratch/s' || return 1
  "$Z" up -d --timeout 60 /tmp/e2e-vol2.yaml || return 1
  "$Z" exec books/1 -- /bin/sh -c '! test -e /data/ledger && ! test -e /scratch/s' || { echo "vol2 sees vol's data"; return 1; }
  "$Z" volume ls
  vol_json vol/data | jq -e '.node != "" and .size_bytes == 16777216 and (.in_use_by == ["vol/ledger"])' || return 1
  # down and up again: the same data.
  "$Z" down vol && "$Z" up -d --timeout 60 /tmp/e2e-vol.yaml || return 1
  [ "$("$Z" exec ledger/1 -- cat /data/ledger)" = entry-1 ] || { echo "lost across down/up"; return 1; }
  # A rollout: the new replica mounts what the old one had.
  sed 's|entrypoint: \["/bin/sleep", "3600"\]|entrypoint: ["/bin/sleep", "3601"]|' /tmp/e2e-vol.yaml > /tmp/e2e-vol-r.yaml
  "$Z" up -d --timeout 60 /tmp/e2e-vol-r.yaml || return 1
  [ "$("$Z" exec ledger/1 -- cat /data/ledger)" = entry-1 ] || { echo "lost across a rollout"; return 1; }
  # kill -9 of the node: the container keeps its mount, the node comes back to it.
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR node start"; sleep 0.3
  "$Z" up -d --timeout 60 /tmp/e2e-vol-r.yaml || return 1
  [ "$("$Z" exec ledger/1 -- cat /data/ledger)" = entry-1 ] && [ "$("$Z" exec ledger/1 -- cat /scratch/s)" = s ]
}

volume_sized() {
  local out; out=$("$Z" exec ledger/1 -- /bin/sh -c 'dd if=/dev/zero of=/data/big bs=1M count=32 2>&1; echo rc=$?')
  echo "$out"
  echo "$out" | grep -q "No space left on device" || return 1
  [ "$(stat -c %s "$ZLAYER_DATA_DIR/named-volumes/vol/data/disk.ext4")" = 16777216 ] || return 1
  # The node measures its volumes every 15 s.
  local end=$((SECONDS+40))
  until vol_json vol/data | jq -e '.used_bytes > 12000000 and .capacity_bytes <= 16777216' >/dev/null; do
    [ $SECONDS -lt $end ] || { vol_json vol/data; return 1; }; sleep 1; done
  "$Z" exec ledger/1 -- rm /data/big
}

volume_rm() {
  local out; out=$("$Z" volume rm vol/data 2>&1); echo "$out"
  echo "$out" | grep -q "volume .vol/data. is in use by vol/ledger" || return 1
  [ "$(vol_mounts)" -ge 1 ] || return 1
  "$Z" down vol && "$Z" down vol2 || return 1
  vol_json vol/data | jq -e '.in_use_by == []' || return 1
  for v in vol/data vol/scratch vol2/data vol2/scratch; do "$Z" volume rm "$v" || return 1; done
  [ "$("$Z" volume ls -o json | jq length)" = 0 ] || return 1
  # The node deletes the data on its next pass (every 15 s).
  local end=$((SECONDS+40))
  until [ "$(vol_mounts)" = 0 ] && [ -z "$(ls -A "$ZLAYER_DATA_DIR/named-volumes" 2>/dev/null)" ]; do
    [ $SECONDS -lt $end ] || { grep named-volumes /proc/mounts; ls -R "$ZLAYER_DATA_DIR/named-volumes"; return 1; }; sleep 1; done
  # Claimed again: a new, empty volume.
  "$Z" up -d --timeout 60 /tmp/e2e-vol.yaml || return 1
  "$Z" exec ledger/1 -- /bin/sh -c '! test -e /data/ledger' || return 1
  "$Z" down vol && "$Z" volume rm vol/data && "$Z" volume rm vol/scratch
}
export -f vol_json vol_mounts volumes_kept volume_sized volume_rm

check "named volumes: scoped per deployment, kept across down/up, a rollout and kill -9 of the node" bash -c volumes_kept
check "a sized volume is an ext4 of that size: a write past it fails in the container; inspect shows the use" bash -c volume_sized
check "volume rm is refused while in use; after down the node deletes the data and unmounts it" bash -c volume_rm
