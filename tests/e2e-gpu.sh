#!/usr/bin/env bash
# GPU passthrough, end to end. With a real NVIDIA driver (/dev/nvidiactl on
# the host) it runs nvidia-smi and a CUDA kernel (tests/fixtures/gpu/probe.cu,
# built with nvcc when present) inside zlayer containers. Without one, as on
# the CI machine, it builds a MOCK driver tree (ZLAYER_GPU_ROOT): fake device
# nodes with the numbers of /dev/fuse and /dev/net/tun, a fake NVML library
# and a fake nvidia-smi. The mock can only show that zlayer finds the devices,
# makes them, allows them (and only them) in the device cgroup, mounts the
# driver's files and sets the environment; the real path shows a GPU working.
set -uo pipefail
cd "$(dirname "$0")/.."
Z=${ZLAYER:-$(pwd)/target/release/zlayer}
[ -x "$Z" ] || Z=$(command -v zlayer)
export ZLAYER_DATA_DIR=$(mktemp -d /tmp/zlayer-e2e-gpu.XXXX)
work=$(mktemp -d /tmp/zlayer-gpu-work.XXXX)
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass+1)); }
ko() { echo "FAIL $1"; fail=$((fail+1)); }
check() { local name=$1; shift; if "$@" >/tmp/e2e-gpu.out 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' /tmp/e2e-gpu.out | tail -20; fi; }
cleanup() {
  "$Z" down gpu >/dev/null 2>&1
  "$Z" node stop >/dev/null 2>&1; sleep 0.3
  pkill -9 -f "data-dir $ZLAYER_DATA_DIR" 2>/dev/null
  rm -rf "$ZLAYER_DATA_DIR" "$work"
}
trap cleanup EXIT
"$Z" image import images/out/busybox.tar >/dev/null

if [ -e /dev/nvidiactl ]; then
  mode=real
  export ZLAYER_GPU_ROOT=/
  gpus=$(ls /dev | grep -cE '^nvidia[0-9]+$')
  # An image with glibc (nvidia-smi and CUDA programs need it) and, if nvcc
  # is here, the CUDA probe. The driver itself comes from the host at run time.
  mkdir -p "$work/ctx"
  bins=()
  if command -v nvcc >/dev/null; then
    nvcc -O2 -o "$work/ctx/cuda-probe" tests/fixtures/gpu/probe.cu && bins+=("$work/ctx/cuda-probe")
  fi
  for f in $( (ldd "$(command -v nvidia-smi)"; for b in "${bins[@]}"; do ldd "$b"; done) | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
    mkdir -p "$work/ctx/root$(dirname "$f")"; cp -L "$f" "$work/ctx/root$f"
  done
  printf 'FROM busybox\nCOPY root/ /\n%s\n' "$( [ ${#bins[@]} -gt 0 ] && echo 'COPY cuda-probe /usr/bin/cuda-probe')" > "$work/ctx/Dockerfile"
  check "build a glibc probe image" "$Z" build -q -t gpu-probe:1 "$work/ctx"
  check "nvidia-smi in a container sees the GPU" bash -c "'$Z' run --gpus 1 gpu-probe:1 -- nvidia-smi -L | tee /dev/stderr | grep -q '^GPU 0: '"
  if [ ${#bins[@]} -gt 0 ]; then
    check "a CUDA kernel runs in a container" bash -c "'$Z' run --gpus 1 gpu-probe:1 -- cuda-probe | tee /dev/stderr | grep -q '^cuda ok: '"
  fi
  check "without --gpus the container has no GPU" bash -c "! '$Z' run gpu-probe:1 -- /usr/local/nvidia/bin/nvidia-smi -L && ! '$Z' run gpu-probe:1 -- ls /dev/nvidiactl"
  image=gpu-probe:1
  smi="nvidia-smi -L"
else
  mode=mock
  root=$work/driver
  export ZLAYER_GPU_ROOT=$root
  mkdir -p "$root/dev" "$root/usr/lib/x86_64-linux-gnu" "$root/usr/bin"
  # /dev/fuse's numbers: openable by anyone, and outside the default device allowlist.
  mknod "$root/dev/nvidia0" c 10 229
  mknod "$root/dev/nvidiactl" c 10 200
  gpus=1
  echo "fake NVML" > "$root/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.999.1"
  ln -s libnvidia-ml.so.999.1 "$root/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
  printf '#!/bin/sh\necho "GPU $NVIDIA_VISIBLE_DEVICES: zlayer mock GPU (no real GPU on this machine)"\n' > "$root/usr/bin/nvidia-smi"
  chmod +x "$root/usr/bin/nvidia-smi"
  check "the container gets the GPU's nodes, driver files and env" bash -c "'$Z' run --gpus 1 busybox -- sh -c 'ls /dev/nvidia0 /dev/nvidiactl && cat /usr/local/nvidia/lib64/libnvidia-ml.so.1 && echo \$LD_LIBRARY_PATH && nvidia-smi' | tee /dev/stderr | tr '\n' ' ' | grep -q '/dev/nvidia0 /dev/nvidiactl fake NVML /usr/local/nvidia/lib64 GPU 0: zlayer mock GPU'"
  check "the device cgroup lets it open its GPU" "$Z" run --gpus 1 busybox -- sh -c 'exec 3<>/dev/nvidia0'
  check "driver files are read-only" bash -c "'$Z' run --gpus 1 busybox -- sh -c 'echo x > /usr/local/nvidia/lib64/libnvidia-ml.so.1' 2>&1 | grep -q 'Read-only file system'"
  image=busybox:latest
  smi="nvidia-smi"
fi
echo "mode: $mode, $gpus GPU(s)"
check "--gpus beyond the host's count is refused" bash -c "'$Z' run --gpus $((gpus+1)) $image -- true 2>&1 | grep -q -- '--gpus $((gpus+1)): this host has $gpus NVIDIA GPU(s)'"
# Without GPUs, a device made with the GPU's numbers cannot be opened (device cgroup, v1 or v2).
nums=$(stat -c '%Hr %Lr' "$ZLAYER_GPU_ROOT/dev/nvidia0")
check "the device cgroup refuses a GPU the container was not given" bash -c "'$Z' run busybox -- sh -c 'mknod /tmp/g c $nums && exec 3<>/tmp/g' 2>&1 | grep -q 'Operation not permitted'"

# A service asking for all GPUs, with one replica more than fit: the scheduler
# leaves the rest pending and says why.
cat > "$work/gpu.yaml" <<YAML
version: v1
deployment: gpu
services:
  trainer:
    image: { name: $image }
    command: { entrypoint: ["/bin/sh", "-c", "sleep 3600"] }
    scale: { mode: fixed, replicas: $((gpus+1)) }
    resources: { gpu: { count: 1 } }
YAML
pending_reason() {
  "$Z" up -d --timeout 5 "$work/gpu.yaml" >/dev/null 2>&1
  local end=$((SECONDS+30))
  until [ "$("$Z" ps -o json | jq '[.[] | select(.state=="running")] | length')" -eq "$gpus" ] &&
        "$Z" ps | grep -q "pending: no node with 1 free GPU (1 node: 1 short of GPUs)"; do
    [ $SECONDS -lt $end ] || { "$Z" ps; return 1; }; sleep 0.2; done
  "$Z" ps
  "$Z" exec trainer/1 -- $smi | grep -q '^GPU '
}
export -f pending_reason; export Z work gpus smi
check "replicas beyond the node's GPUs stay pending with the reason; placed ones see their GPU" bash -c pending_reason
# Scale-in removes the pending replica. Then a rollout with every GPU taken
# has no room for a replacement beside the old replica: each old replica
# makes way and its slot restarts on the new revision.
gpu_rollout() {
  local f=$work/roll.yaml
  sed "s/replicas: $((gpus+1))/replicas: $gpus/" "$work/gpu.yaml" > "$f"
  "$Z" up -d --timeout 30 "$f" >/dev/null || return 1
  sed -i 's/sleep 3600/sleep 3601/' "$f"
  "$Z" up -d --timeout 30 "$f" || return 1
  local rev; rev=$("$Z" rollouts -o json | jq -r '.[] | select(.service=="trainer") | .revision')
  "$Z" ps -o json | jq -e --arg r "$rev" --argjson n "$gpus" '[.[] | select(.service=="trainer" and .state=="running" and .revision==$r)] | length == $n' || { "$Z" ps; return 1; }
  "$Z" events > "$work/events"; cat "$work/events"
  # Removing the pending replica 2 must not touch replica 1's container (it once did).
  ! grep -q ' lost ' "$work/events" &&
    grep -q "no spare GPU for a replacement beside replica 1; replacing it in place" "$work/events"
}
export -f gpu_rollout
check "a rollout with no spare GPU replaces replicas in place" bash -c gpu_rollout
check "down frees the GPUs" bash -c "'$Z' down gpu && '$Z' run --gpus $gpus $image -- true"

echo "e2e-gpu ($mode): $pass passed, $fail failed"
[ "$fail" -eq 0 ]
