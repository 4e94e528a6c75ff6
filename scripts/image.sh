#!/usr/bin/env bash
# Build the Dockerfile's image without a Docker engine (buildah, chroot isolation; overlay or vfs storage)
# and run the compiled Kubeflow spec's container commands inside it.
#
#   scripts/image.sh build       base image (debootstrap, once) + buildah bud -> $IMAGE
#   scripts/image.sh test        compile; ImportSchemaGen, ImageExampleGen, StatisticsGen as uid 10001
#   scripts/image.sh kfp-local [--pure]   the whole compiled spec through kfp.local's DockerRunner
#                                (podman's Docker API); --pure: without the artifact-type shim
#
# Environment: IMAGE (localhost/twinflow:dev), STORAGE_DRIVER (overlay if mountable, else vfs), IMAGELAB (/tmp/imagelab: rootfs, storage, test data),
# PYTHON_IMAGE (a pullable base; default: a debootstrapped bookworm python made here),
# WHEELS (a folder of wheels, default /opt/wheels, holding the torch CPU wheel),
# TORCH_INDEX (default file:///wheels: the PyTorch index is not reachable here).
# Nothing here is part of 'make test'.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The checkout's packages first (an editable install made before a package was added misses it).
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}  # host-side noise

IMAGE=${IMAGE:-localhost/twinflow:dev}  # fully qualified: as podman lists it to kfp.local
LAB=${IMAGELAB:-/tmp/imagelab}
BASE=${PYTHON_IMAGE:-localhost/debian-python:bookworm}
WHEELS=${WHEELS:-/opt/wheels}
TORCH_INDEX=${TORCH_INDEX:-file:///wheels}
SUITE=bookworm
UID_IN_IMAGE=10001

mkdir -p "$LAB"
# Own storage and engine config, shared by buildah and podman, so the built image is visible
# to both and the host's defaults stay untouched. Storage driver: overlay where the kernel mounts
# it, else vfs. vfs stores every layer as a full copy of the tree (this image: ~5.2 GB per layer
# after the dependency install, 60+ GB for a layered build), so with vfs the build is not layered.
if [[ -z ${STORAGE_DRIVER:-} ]]; then
    probe=$(mktemp -d "$LAB/.overlay-probe.XXXXXX")
    mkdir -p "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        STORAGE_DRIVER=overlay
    else
        STORAGE_DRIVER=vfs
    fi
    rm -rf "$probe"
fi
export CONTAINERS_STORAGE_CONF=$LAB/storage-$STORAGE_DRIVER.conf CONTAINERS_CONF=$LAB/containers.conf
cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "$STORAGE_DRIVER"
runroot = "$LAB/runroot-$STORAGE_DRIVER"
graphroot = "$LAB/storage-$STORAGE_DRIVER"
CONF
if [[ ! -f $CONTAINERS_CONF ]]; then
    # This sandbox: crun refuses hybrid cgroups (v1 + v2 mounted), hence runc; raising
    # RLIMIT_NPROC/NOFILE above the host's limits is refused, podman's defaults are higher.
    cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
fi

need() {  # need COMMAND PACKAGE...: apt-get install the packages when the command is missing
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null && return
    echo "image: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

has_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

BASE_PACKAGES=python3,python3-dev,python3-venv,python-is-python3,ca-certificates
base_label() { buildah inspect --type image --format '{{index .OCIv1.Config.Labels "twinflow.base"}}' "$1" 2>/dev/null; }

make_base() {
    # A stand-in for python:3.11.7-slim-bookworm: Debian 12 with its python3 (3.11.2) as 'python',
    # venv and the C headers (the official image has them; pyfarmhash builds from source).
    local recipe="debootstrap minbase $SUITE $BASE_PACKAGES"
    if [[ $BASE != localhost/debian-python:bookworm ]]; then
        has_image "$BASE" || buildah pull "$BASE"
        return
    fi
    [[ $(base_label "$BASE") == "$recipe" ]] && return
    need debootstrap debootstrap
    local rootfs=$LAB/rootfs
    if [[ ! -f $rootfs.recipe || $(cat "$rootfs.recipe") != "$recipe" ]]; then
        echo "image: debootstrap $SUITE into $rootfs (log $LAB/debootstrap.log)"
        rm -rf "$rootfs" "$rootfs.recipe"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" http://deb.debian.org/debian \
            >"$LAB/debootstrap.log"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        echo "$recipe" >"$rootfs.recipe"
    fi
    local ctr mnt
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    tar -C "$rootfs" -c . | tar -C "$mnt" -x
    buildah umount "$ctr" >/dev/null
    buildah config --env LANG=C.UTF-8 --cmd python3 --label "twinflow.base=$recipe" "$ctr"
    buildah commit --rm "$ctr" "$BASE"
}

cmd_build() {
    need buildah buildah
    make_base
    local args=(--isolation chroot --storage-driver "$STORAGE_DRIVER" -t "$IMAGE" --build-arg "PYTHON_IMAGE=$BASE")
    [[ $STORAGE_DRIVER == vfs ]] && args+=(--layers=false) || args+=(--layers)
    if [[ -d $WHEELS ]]; then
        args+=(--volume "$WHEELS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg "TORCH_INDEX=$TORCH_INDEX")
    fi
    # This machine's egress proxy re-signs TLS: let pip in the build trust what the host trusts
    # (a RUN-time mount only, not a layer).
    args+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    local start=$SECONDS
    buildah bud "${args[@]}" .
    echo "image: built $IMAGE in $((SECONDS - start)) s"
    buildah images "$IMAGE"
    echo "image: storage driver $STORAGE_DRIVER, $(du -sh "$LAB/storage-$STORAGE_DRIVER" | cut -f1) under $LAB/storage-$STORAGE_DRIVER"
}

write_tiny_data() {  # the tests' generator: 3 classes, 60 train + 15 test 28x28 PNGs each
    .venv/bin/python -c 'import sys; from pathlib import Path; from tests.image_data import write_image_folders
write_image_folders(Path(sys.argv[1]), classes=("circle", "square", "stripes"), train_per_class=60, test_per_class=15)' "$1"
}

cmd_test() {
    need podman podman runc
    has_image "$IMAGE" || cmd_build
    local work=$LAB/test
    rm -rf "$work" && mkdir -p "$work"
    write_tiny_data "$work/data"
    mkdir -p "$work/root" && chown "$UID_IN_IMAGE" "$work/root"
    .venv/bin/twinflow compile --image "$IMAGE" --data-dir "$work/data" --pipeline-root "$work/root" \
        --architecture tiny_cnn --epochs 1 --output "$work/pipeline.yaml"
    # Host paths are mounted at the same paths in the container, so the spec's URIs hold in both.
    local task
    for task in ImportSchemaGen ImageExampleGen StatisticsGen; do
        echo "image: running $task in $IMAGE as uid $UID_IN_IMAGE"
        local command=()
        mapfile -d '' command < <(.venv/bin/python scripts/image/step.py invocation "$work/pipeline.yaml" "$task" "$work/root")
        podman run --rm --user "$UID_IN_IMAGE" --network none \
            -v "$work/data:$work/data:ro" -v "$work/root:$work/root" "$IMAGE" "${command[@]}" \
            >"$work/$task.log" 2>&1 || { tail -40 "$work/$task.log"; echo "image: $task failed" >&2; exit 1; }
        echo "image: $task done (log $work/$task.log)"
    done
    .venv/bin/python scripts/image/step.py check "$work/pipeline.yaml" "$work/root"
}

cmd_kfp_local() {
    need podman podman runc
    has_image "$IMAGE" || cmd_build
    local sock=$LAB/podman.sock work=$LAB/kfp-local
    if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
        podman system service --time=0 "unix://$sock" >"$LAB/podman-service.log" 2>&1 &
        local service=$!
        # shellcheck disable=SC2064
        trap "kill $service 2>/dev/null" EXIT
        for _ in $(seq 50); do curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    rm -rf "$work" && mkdir -p "$work"
    # DockerRunner mounts only the pipeline root: the data and the schema go in it, and the
    # containers (uid 10001) must be able to write there.
    write_tiny_data "$work/data"
    .venv/bin/twinflow draft-schema --data-dir "$work/data" --out "$work/schema.pbtxt"
    chmod -R a+rwX "$work"
    .venv/bin/twinflow compile --image "$IMAGE" --data-dir "$work/data" --schema "$work/schema.pbtxt" \
        --serving-dir "$work/serving" --architecture tiny_cnn --epochs 4 --batch-size 16 --accuracy-floor 0.6 \
        --output "$LAB/kfp-local.yaml"
    local rc=0
    DOCKER_HOST=unix://$sock .venv/bin/python scripts/image/kfp_local.py "$LAB/kfp-local.yaml" "$work" "$@" || rc=$?
    podman container prune -f >/dev/null  # DockerRunner leaves its exited containers behind
    return $rc
}

case ${1:-} in
    build) cmd_build ;;
    test) cmd_test ;;
    kfp-local) cmd_kfp_local "${@:2}" ;;
    *) echo "usage: $0 build|test|kfp-local" >&2; exit 2 ;;
esac
