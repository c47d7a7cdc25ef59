# Helpers for tests that need a registry: Debian's docker-registry with a
# config written here (never the package default, which listens on every
# interface), optionally htpasswd auth, and a curl-based pusher that sends a
# layout's blobs exactly as they are (skopeo recompresses uncompressed layers).

# start_registry NAME ADDR [HTPASSWD]   (storage and log under $REG_ROOT/NAME)
start_registry() {
  local name=$1 addr=$2 htpasswd=${3:-} dir=$REG_ROOT/$1
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: { level: error, accesslog: { disabled: true } }"
    echo "storage: { filesystem: { rootdirectory: $dir/data }, delete: { enabled: true } }"
    echo "http: { addr: $addr }"
    [ -n "$htpasswd" ] && echo "auth: { htpasswd: { realm: zlayer-test, path: $htpasswd } }"
  } > "$dir/config.yml"
  ${REG_NETNS:+ip netns exec "$REG_NETNS"} docker-registry serve "$dir/config.yml" >>"$dir/log" 2>&1 &
  echo $! > "$dir/pid"
  local end=$((SECONDS+10))
  until curl -s -o /dev/null -m 1 "http://$addr/v2/"; do
    [ $SECONDS -lt $end ] || { echo "registry $name did not start"; cat "$dir/log"; return 1; }; sleep 0.1; done
}

stop_registry() { local p; p=$(cat "$REG_ROOT/$1/pid" 2>/dev/null) && kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; true; }

# blob_file NAME DIGEST: the registry's file for a blob (to tamper with it).
blob_file() { local h=${2#sha256:}; echo "$REG_ROOT/$1/data/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"; }

# curl_push LAYOUT REF_NAME ADDR REPO:TAG: each blob as one upload (POST, then PUT with
# the digest, streamed from the file), then the manifest.
curl_push() {
  local layout=$1 ref=$2 addr=$3 repo=${4%:*} tag=${4##*:} m mt d loc
  m=$(jq -r --arg n "$ref" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$n) | .digest' "$layout/index.json")
  for d in $(jq -r '.config.digest, .layers[].digest' "$layout/blobs/sha256/${m#sha256:}"); do
    loc=$(curl -sf -o /dev/null -D - -X POST "http://$addr/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //ip')
    [ -n "$loc" ] || return 1
    case $loc in http*) ;; *) loc=http://$addr$loc;; esac
    case $loc in *\?*) loc="$loc&digest=$d";; *) loc="$loc?digest=$d";; esac
    curl -sf -o /dev/null -H "Content-Type: application/octet-stream" -T "$layout/blobs/sha256/${d#sha256:}" "$loc" || return 1
  done
  mt=$(jq -r .mediaType "$layout/blobs/sha256/${m#sha256:}")
  curl -sf -o /dev/null -X PUT -H "Content-Type: $mt" --data-binary "@$layout/blobs/sha256/${m#sha256:}" "http://$addr/v2/$repo/manifests/$tag"
}
