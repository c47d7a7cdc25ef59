# Configs and inline files, sourced by tests/e2e.sh (uses its $Z, check and data dir).
cat > /tmp/e2e-cfg.yaml <<'YAML'
version: v1
deployment: cfg
services:
  app:
    image: { name: busybox:latest }
    command: { entrypoint: ["/bin/sleep", "3600"] }
    files:
      - { target: /etc/app/app.conf, config: e2e-app }
      - { target: /etc/motd, content: "inline hello\n" }
YAML
cfg_ids() { "$Z" ps -o json | jq -r '[.[] | select(.deployment=="cfg") | .container_id] | sort | join(" ")'; }

configs_mounted() {
  printf 'level=1\n' > /tmp/e2e-cfg.v1
  local out; out=$("$Z" up -d /tmp/e2e-cfg.yaml 2>&1); echo "$out"
  echo "$out" | grep -q '/tmp/e2e-cfg.yaml:8:.*services.app.files\[0\].config: no config named .e2e-app.; create it first with .zlayer config create e2e-app' || return 1
  "$Z" config create e2e-app --from-file /tmp/e2e-cfg.v1 || return 1
  "$Z" config ls -o json | jq -e '.[] | select(.name=="e2e-app" and .version==1 and .bytes==8)' >/dev/null || return 1
  "$Z" up -d --timeout 60 /tmp/e2e-cfg.yaml || return 1
  [ "$("$Z" exec app/1 -- cat /etc/app/app.conf)" = "level=1" ] || return 1
  [ "$("$Z" exec app/1 -- cat /etc/motd)" = "inline hello" ] || return 1
  ! "$Z" exec app/1 -- /bin/sh -c 'echo x > /etc/app/app.conf' 2>/dev/null || { echo "the config is writable"; return 1; }
}

configs_roll() {
  local before; before=$(cfg_ids)
  printf 'level=2\n' > /tmp/e2e-cfg.v2
  "$Z" config create e2e-app --from-file /tmp/e2e-cfg.v2 || return 1
  local end=$((SECONDS+60))
  until [ "$("$Z" exec app/1 -- cat /etc/app/app.conf 2>/dev/null)" = "level=2" ]; do
    [ $SECONDS -lt $end ] || { "$Z" ps; "$Z" rollouts; return 1; }; sleep 0.3; done
  [ "$(cfg_ids)" != "$before" ] || return 1
  # An inline change rolls it too.
  before=$(cfg_ids)
  sed -i 's/inline hello/inline bye/' /tmp/e2e-cfg.yaml
  "$Z" up -d --timeout 60 /tmp/e2e-cfg.yaml || return 1
  [ "$("$Z" exec app/1 -- cat /etc/motd)" = "inline bye" ] && [ "$(cfg_ids)" != "$before" ]
}

configs_rm() {
  local out; out=$("$Z" config rm e2e-app 2>&1); echo "$out"
  echo "$out" | grep -q 'config .e2e-app. is in use by cfg/app' || return 1
  "$Z" down cfg && "$Z" config rm e2e-app && [ "$("$Z" config ls -o json | jq length)" = 0 ]
}
export -f cfg_ids configs_mounted configs_roll configs_rm

check "config create/ls; a spec naming a missing config is refused; config and inline files mounted read-only" bash -c configs_mounted
check "a new config value rolls its consumers; so does an inline change" bash -c configs_roll
check "config rm refused while in use; after down it goes" bash -c configs_rm
