# Secrets, sourced by tests/e2e.sh (uses its $Z, check and data dir).
# A canary value goes in through stdin; the replica gets it as env ($S:)
# and as a file; then every place zlayer writes or shows is searched for it.
SECRETS_ROOT=/run/zlayer/secrets
CANARY="zl-canary-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CANARY2="zl-canary2-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SECRETS_ROOT CANARY CANARY2
cat > /tmp/e2e-sec.yaml <<'YAML'
version: v1
deployment: sec
services:
  app:
    image: { name: busybox:latest }
    user: "1000:1000"
    command: { entrypoint: ["/bin/sh", "-c", "cat /run/secrets/e2e-cert >/dev/null && echo file-readable-as-1000; [ -n \"$DB_PASSWORD\" ] && echo env-set; exec sleep 3600"] }
    env: { DB_PASSWORD: $S:e2e-db }
    secrets: [e2e-cert]
YAML
sec_app_ids() { "$Z" ps -o json | jq -r '[.[] | select(.deployment=="sec") | .container_id] | sort | join(" ")'; }

secrets_create_and_list() {
  printf '%s' "$CANARY" | "$Z" secret create e2e-db - || return 1
  printf 'cert-%s' "$CANARY" > /tmp/e2e-sec.cert
  "$Z" secret create e2e-cert --from-file /tmp/e2e-sec.cert || return 1
  rm -f /tmp/e2e-sec.cert
  "$Z" secret create e2e-unused --from-literal not-the-canary || return 1
  "$Z" secret ls
  "$Z" secret ls -o json | jq -e '[.[] | select(.name=="e2e-db" and .version==1)] | length == 1' >/dev/null || return 1
  ! "$Z" secret ls -o json | grep -q zl-canary || { echo "secret ls shows a value"; return 1; }
  # A bad name is refused with the reason.
  "$Z" secret create Bad_Name --from-literal x 2>&1 | grep -q 'not a DNS label' || return 1
}

secrets_missing_refused() {
  sed 's/\$S:e2e-db/$S:e2e-nosuch/' /tmp/e2e-sec.yaml > /tmp/e2e-sec-missing.yaml
  local out; out=$("$Z" up -d /tmp/e2e-sec-missing.yaml 2>&1); echo "$out"
  echo "$out" | grep -q "/tmp/e2e-sec-missing.yaml:8:.*services.app.env.DB_PASSWORD: no secret named .e2e-nosuch.; create it first with .zlayer secret create e2e-nosuch" || return 1
  ! "$Z" ps -o json | jq -e '.[] | select(.deployment=="sec")' >/dev/null
}

secrets_validate_warns() {
  printf 'version: v1\ndeployment: w\nservices:\n  a:\n    image: { name: busybox:latest }\n    env: { API_TOKEN: plain, DB_PASSWORD: $S:x, LOG: info }\n' > /tmp/e2e-sec-warn.yaml
  local out; out=$("$Z" validate /tmp/e2e-sec-warn.yaml 2>&1); echo "$out"
  echo "$out" | grep -q '/tmp/e2e-sec-warn.yaml:6:.*services.a.env.API_TOKEN: warning: .API_TOKEN. looks like a secret but takes a literal' || return 1
  [ "$(echo "$out" | grep -c warning)" = 1 ]
}

secrets_delivered() {
  "$Z" up -d --timeout 60 /tmp/e2e-sec.yaml || return 1
  [ "$("$Z" exec app/1 -- /bin/sh -c 'echo "$DB_PASSWORD"')" = "$CANARY" ] || { echo "env value wrong"; return 1; }
  [ "$("$Z" exec app/1 -- cat /run/secrets/e2e-cert)" = "cert-$CANARY" ] || { echo "file value wrong"; return 1; }
  [ "$("$Z" exec app/1 -- stat -c '%a %u:%g' /run/secrets/e2e-cert)" = "400 1000:1000" ] || { echo "file mode/owner wrong"; return 1; }
  ! "$Z" exec app/1 -- /bin/sh -c 'echo x > /run/secrets/new' 2>/dev/null || { echo "/run/secrets is writable"; return 1; }
  ! "$Z" exec app/1 -- ls /run/secrets/e2e-unused 2>/dev/null || { echo "an unused secret was delivered"; return 1; }
  local end=$((SECONDS+20))
  until "$Z" logs app | grep -q 'file-readable-as-1000' && "$Z" logs app | grep -q env-set; do
    [ $SECONDS -lt $end ] || { "$Z" logs app; return 1; }; sleep 0.2; done
  # The tmpfs is mounted once per container, outside the data dir.
  [ "$(grep -c " $SECRETS_ROOT/sec-app-" /proc/mounts)" = 1 ] || { grep zlayer-secrets /proc/mounts; return 1; }
}

# The canary is nowhere zlayer writes or shows, except the container's tmpfs
# (found there, so the search itself works). The data dir holds the Raft log,
# its snapshots and sled, the agent's store, templates, bundles and logs.
secrets_never_shown() {
  local found=0 where
  for where in "ps" "ps -o json" "events -o json" "rollouts -o json" "secret ls -o json" "logs app" "rollout history sec -o json"; do
    if $Z $where 2>&1 | grep -q 'zl-canary'; then echo "found in zlayer $where"; found=1; fi
  done
  # Command lines (an env value is in /proc/PID/environ, for root, as in Docker; see docs/secrets.md).
  ps auxww | grep -v grep | grep -q 'zl-canary' && { echo "found in ps auxww"; found=1; }
  grep -a -l -r 'zl-canary' "$ZLAYER_DATA_DIR" 2>/dev/null && { echo "found under the data dir"; found=1; }
  grep -a -l -r "$CANARY" "$SECRETS_ROOT" | grep -q '/env/e2e-db$' || { echo "control: not found in the tmpfs"; found=1; }
  [ $found -eq 0 ]
}

# A new value rolls the service (a new container with it); a new key does not.
secrets_rotation_rolls() {
  local before; before=$(sec_app_ids)
  printf '%s' "$CANARY2" | "$Z" secret create e2e-db - || return 1
  local end=$((SECONDS+60))
  until [ "$("$Z" exec app/1 -- /bin/sh -c 'echo "$DB_PASSWORD"' 2>/dev/null)" = "$CANARY2" ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps; "$Z" rollouts; return 1; }; sleep 0.3; done
  [ "$(sec_app_ids)" != "$before" ] || { echo "same container"; return 1; }
  "$Z" rollouts -o json | jq -e '.[] | select(.deployment=="sec") | .state == "done"' >/dev/null || { "$Z" rollouts; return 1; }
  local rolled; rolled=$(sec_app_ids)
  "$Z" secret rotate-key || return 1
  sleep 2
  [ "$(sec_app_ids)" = "$rolled" ] || { echo "a key rotation restarted the service"; return 1; }
  # The values open under the new key: a restart stages them again.
  "$Z" restart sec/app || return 1
  end=$((SECONDS+60))
  until [ "$(sec_app_ids)" != "$rolled" ] && [ "$("$Z" exec app/1 -- cat /run/secrets/e2e-cert 2>/dev/null)" = "cert-$CANARY" ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps; "$Z" events | tail; return 1; }; sleep 0.3; done
}

secrets_rm_refused_in_use_then_cleaned() {
  local out; out=$("$Z" secret rm e2e-db 2>&1); echo "$out"
  echo "$out" | grep -q 'secret .e2e-db. is in use by sec/app' || return 1
  "$Z" secret rm e2e-unused || return 1
  "$Z" down sec || return 1
  [ "$(grep -c " $SECRETS_ROOT/" /proc/mounts)" = 0 ] || { echo "a secrets tmpfs is left"; grep " $SECRETS_ROOT/" /proc/mounts; return 1; }
  [ -z "$(ls -A "$SECRETS_ROOT" 2>/dev/null)" ] || { echo "a secrets dir is left"; return 1; }
  "$Z" secret rm e2e-db && "$Z" secret rm e2e-cert || return 1
  [ "$("$Z" secret ls -o json | jq length)" = 0 ]
}
export -f sec_app_ids secrets_create_and_list secrets_missing_refused secrets_validate_warns \
  secrets_delivered secrets_never_shown secrets_rotation_rolls secrets_rm_refused_in_use_then_cleaned

check "secret create (stdin, file, literal) and ls: names and versions, never values" bash -c secrets_create_and_list
check "a spec naming a missing secret is refused with file, line, key and fix" bash -c secrets_missing_refused
check "validate warns when a secret-looking env takes a literal" bash -c secrets_validate_warns
check "secrets reach the replica as \$S: env and a 0400 file of its user on a read-only tmpfs" bash -c secrets_delivered
check "the canary is in no output, command line or file under the data dir (Raft, sled, bundles, logs)" bash -c secrets_never_shown
check "a new value rolls the service; rotate-key rolls nothing and the values still open" bash -c secrets_rotation_rolls
check "secret rm refused while in use; down unmounts the tmpfs; then rm works" bash -c secrets_rm_refused_in_use_then_cleaned
