#!/usr/bin/env bash
# Build the container image and prove it works: demo mode, read-only root filesystem, state in a
# volume, non-root UID, /metrics and /-/healthy answering, Docker's HEALTHCHECK turning healthy.
#
#   bash deploy/test-image.sh                 # as root on a machine without registry access too
#   PYTHON_IMAGE=python:3.12-slim bash deploy/test-image.sh
#
# Works without any container registry:
#   - no Docker engine running? Installs Debian's docker.io when missing and starts dockerd by
#     hand (no bridge, no iptables: every container here uses the host's network, and the test
#     talks to it on 127.0.0.1 only); that dockerd is stopped again on exit.
#   - the official base image (python:3.11-slim) cannot be pulled? Builds a local one from
#     Debian bookworm with debootstrap (python3 3.11 + pip), imports it as
#     localhost/idaas-sync-exporter-base:bookworm and passes it as the PYTHON_IMAGE build
#     argument. It is kept and reused by later runs (REBUILD_BASE=1 makes it anew).
#   - pip behind a TLS-intercepting proxy: the CA bundle pip uses on this machine (PIP_CERT or
#     `pip config get global.cert`) is handed to the build as the BuildKit secret pip-cert.
#
# Environment: IMAGE (tag to build, default idaas-sync-exporter:test), PYTHON_IMAGE (base image;
# default: the official one if it can be had, else the local one), DEBIAN_MIRROR (for
# debootstrap), KEEP=1 (leave the container running), TIMEOUT (seconds to wait for each check,
# default 90).
#
# Prints one line per step with its duration, and at the end the image size. Exit code 0 when
# every check passed, 77 when no Docker engine can be had here (not root, or dockerd cannot be
# installed or started: the test suite then skips with that reason), 1 on any other failure.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-idaas-sync-exporter:test}"
OFFICIAL_BASE="python:3.11-slim"
LOCAL_BASE="localhost/idaas-sync-exporter-base:bookworm"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TIMEOUT="${TIMEOUT:-90}"
UID_EXPECTED=65532
STATE_DIR=/var/lib/idaas-sync-exporter

START=$(date +%s)
step_start=$START
WORK=$(mktemp -d /tmp/idaas-test-image.XXXXXX)
CONTAINER="idaas-sync-exporter-test-$$"
VOLUME="idaas-sync-exporter-test-state-$$"
DOCKERD_PID=""
DOCKER=(docker)

log() { printf 'test-image: %s\n' "$*"; }
die() {
  printf 'test-image: FAILED: %s\n' "$*" >&2
  exit 1
}
no_engine() {
  printf 'test-image: NO DOCKER ENGINE: %s\n' "$*" >&2
  exit 77
}
case "${IDAAS_SKIP_IMAGE_TEST:-}" in
  1 | true | TRUE | True | yes | YES | on | ON)
    no_engine "IDAAS_SKIP_IMAGE_TEST is set: nothing installed, no dockerd started" ;;
esac
step() {
  local now
  now=$(date +%s)
  log "$1 ($((now - step_start)) s)"
  step_start=$now
}

cleanup() {
  local rc=$?
  set +e
  if [[ -n "${DOCKER_READY:-}" ]]; then
    if ((rc != 0)) && "${DOCKER[@]}" container inspect "$CONTAINER" >/dev/null 2>&1; then
      echo "---- container logs (last 40 lines) ----" >&2
      "${DOCKER[@]}" logs --tail 40 "$CONTAINER" >&2 2>&1
    fi
    if [[ -z "${KEEP:-}" ]]; then
      "${DOCKER[@]}" rm -f "$CONTAINER" >/dev/null 2>&1
      "${DOCKER[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1
    fi
  fi
  if [[ -n "$DOCKERD_PID" && -z "${KEEP:-}" ]]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# Wait for a command to succeed, up to TIMEOUT seconds: polls, never a blind sleep.
wait_for() {
  local what=$1
  shift
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || die "timed out after ${TIMEOUT} s waiting for: $what"
    sleep 0.5
  done
}

# -- 1. a Docker engine ------------------------------------------------------------------------
ensure_docker() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  [[ $(id -u) -eq 0 ]] || no_engine "no Docker engine answers and this is not root: start one, or run as root"
  if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || no_engine "no dockerd and no apt-get to install docker.io"
    log "installing Debian's docker.io"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends docker.io >/dev/null; } || no_engine "apt-get install docker.io failed"
  fi
  log "starting dockerd by hand (log: $WORK/dockerd.log)"
  # No bridge and no iptables rules: containers use --network host, so nothing is routed.
  setsid dockerd --host unix:///var/run/docker.sock --bridge=none --iptables=false \
    --ip6tables=false --ip-forward=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local deadline=$(($(date +%s) + 60))
  until docker info >/dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2>/dev/null || {
      tail -20 "$WORK/dockerd.log" >&2
      no_engine "dockerd exited at start"
    }
    (($(date +%s) < deadline)) || no_engine "dockerd did not answer within 60 s"
    sleep 0.2
  done
}

# A client that builds with BuildKit: buildx, or Debian's docker.io client (BuildKit built in).
choose_client() {
  if docker buildx version >/dev/null 2>&1; then
    DOCKER=(docker)
  elif [[ -x /usr/bin/docker ]] && [[ $(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null) =~ ^(19|20|21|22)\. ]]; then
    DOCKER=(env DOCKER_BUILDKIT=1 /usr/bin/docker)
  else
    die "no BuildKit-capable docker client: install the buildx plugin (docker-buildx)"
  fi
}

ensure_docker
choose_client
DOCKER_READY=1
step "docker engine $("${DOCKER[@]}" version --format '{{.Server.Version}}') ready"

# -- 2. a base image ---------------------------------------------------------------------------
make_local_base() {
  [[ $(id -u) -eq 0 ]] || die "building a local base image with debootstrap needs root"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  local root="$WORK/rootfs"
  log "debootstrap bookworm (python3, pip) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    {
      tail -20 "$WORK/debootstrap.log" >&2
      die "debootstrap failed"
    }
  # What Debian's slim images leave out too: package lists and caches, docs, man pages and
  # message translations.
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
  tar -C "$root" --numeric-owner -c . | "${DOCKER[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$LOCAL_BASE" >/dev/null
  rm -rf "$root"
}

if [[ -n "${PYTHON_IMAGE:-}" ]]; then
  BASE="$PYTHON_IMAGE"
elif "${DOCKER[@]}" image inspect "$OFFICIAL_BASE" >/dev/null 2>&1 ||
  timeout 120 "${DOCKER[@]}" pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
  BASE="$OFFICIAL_BASE"
else
  log "$OFFICIAL_BASE cannot be pulled here: using a local Debian bookworm base"
  if [[ -n "${REBUILD_BASE:-}" ]] || ! "${DOCKER[@]}" image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    make_local_base
  fi
  BASE="$LOCAL_BASE"
fi
step "base image $BASE ($("${DOCKER[@]}" run --rm --network none "$BASE" python3 -c 'import platform; print("Python", platform.python_version())'))"

# -- 3. build ----------------------------------------------------------------------------------
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
build_args=(--network host -t "$IMAGE" --build-arg "PYTHON_IMAGE=$BASE"
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED")
PIP_CA="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
if [[ -n "$PIP_CA" && -s "$PIP_CA" ]]; then
  build_args+=(--secret "id=pip-cert,src=$PIP_CA")
fi
"${DOCKER[@]}" build "${build_args[@]}" . >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log" >&2
  die "docker build failed"
}
step "built $IMAGE"

# -- 4. run: demo mode, read-only root FS, state volume, non-root ------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE_URL="http://127.0.0.1:$PORT"
"${DOCKER[@]}" volume create "$VOLUME" >/dev/null
# The port moves through the environment variable, so the image's HEALTHCHECK follows it; the
# health check runs every second here instead of every 30 s.
"${DOCKER[@]}" run -d --name "$CONTAINER" --network host \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  --mount "type=volume,src=$VOLUME,dst=$STATE_DIR" \
  -e "IDAAS_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:$PORT" \
  --health-interval 1s --health-start-period 60s \
  "$IMAGE" --demo --state.file "$STATE_DIR/state.json" >/dev/null
step "started $CONTAINER (--read-only, volume at $STATE_DIR, port $PORT)"

get() { curl -fsS --max-time 5 "$BASE_URL$1"; }
metrics_have() {
  local text
  text=$(get /metrics) && grep -Eq "$1" <<<"$text"
}

wait_for "/-/healthy" get /-/healthy
wait_for "/-/ready" get /-/ready
wait_for "idaas_sync_jobs_total samples in /metrics" metrics_have '^idaas_sync_jobs_total\{'
wait_for "a successful state write" metrics_have '^idaas_exporter_state_writes_total\{result="success"\} [1-9]'
health_is() { [[ $("${DOCKER[@]}" inspect --format '{{.State.Health.Status}}' "$CONTAINER") == healthy ]]; }
wait_for "Docker HEALTHCHECK to report healthy" health_is
step "/metrics has idaas_sync_jobs_total, /-/healthy and /-/ready answer, HEALTHCHECK healthy"

# -- 5. what the container really is -----------------------------------------------------------
pid=$("${DOCKER[@]}" inspect --format '{{.State.Pid}}' "$CONTAINER")
proc_uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[[ "$proc_uid" == "$UID_EXPECTED" ]] || die "the exporter runs as UID $proc_uid, not $UID_EXPECTED"
[[ $("${DOCKER[@]}" inspect --format '{{.Config.User}}' "$IMAGE") == "$UID_EXPECTED:$UID_EXPECTED" ]] ||
  die "the image's USER is not $UID_EXPECTED:$UID_EXPECTED"
[[ $("${DOCKER[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$CONTAINER") == true ]] ||
  die "the container's root filesystem is not read-only"
# Even root (UID 0, who owns /) cannot write there: the filesystem itself refuses.
if probe=$("${DOCKER[@]}" exec -u 0 "$CONTAINER" sh -c 'echo x > /probe' 2>&1); then
  die "the root filesystem is writable"
fi
[[ "$probe" == *"Read-only file system"* ]] || die "writing / failed, but not as read-only: $probe"
"${DOCKER[@]}" exec "$CONTAINER" test -s "$STATE_DIR/state.json" || die "no state file in the volume"
step "process UID $proc_uid (non-root), root filesystem read-only, state.json in the volume"

size=$("${DOCKER[@]}" image inspect --format '{{.Size}}' "$IMAGE")
base_size=$("${DOCKER[@]}" image inspect --format '{{.Size}}' "$BASE")
log "image $IMAGE: $((size / 1000000)) MB ($size bytes; base $BASE: $((base_size / 1000000)) MB)"
log "OK in $(($(date +%s) - START)) s"
