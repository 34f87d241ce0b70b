#!/usr/bin/env bash
# Before the kit starts on a CI runner: can it run here? Checks the two things a hosted runner's job
# container gets wrong, each refused in one line with the fix, and prints what it found.
#   usage: runner-check.sh STATE_DIR [CGROUP_MOUNT]   (CGROUP_MOUNT: where the cgroup hierarchy is, /sys/fs/cgroup)
#
# 1. The cluster's state (K8S_HOME, the test bed's TMPDIR: containerd's and dockerd's image stores) must be on
#    a real filesystem. On overlayfs (a container's root, its /tmp) containerd's overlayfs snapshotter cannot
#    run: the kernel refuses an overlayfs as another overlay's upper directory ("filesystem on ... not
#    supported as upperdir"; the upper filesystem's requirements: https://docs.kernel.org/filesystems/overlayfs.html,
#    "Upper and Lower").
# 2. The cgroup version. The kit needs no change for it: its kubelet uses the cgroupfs driver, which works
#    on v1 and v2, and failCgroupV1: false only matters on v1 (templates/kubelet-config.yaml). What v2 adds
#    is the "no internal processes" rule: the kubelet creates kubepods/ under the hierarchy it sees and enables
#    controllers for it, which a non-root cgroup that holds processes refuses (EBUSY). A container with a
#    private cgroup namespace sees its own cgroup, full of its processes, as /sys/fs/cgroup; the host's root
#    cgroup is exempt. The root cgroup is the one without a cgroup.type file
#    (https://docs.kernel.org/admin-guide/cgroup-v2.html: "cgroup.type ... exists on non-root cgroups";
#    "no internal process constraint": "the root cgroup is exempt from this restriction").
set -euo pipefail
state=${1:?usage: runner-check.sh STATE_DIR [CGROUP_MOUNT]}
cgroup=${2:-/sys/fs/cgroup}
die() { echo "runner-check: $*" >&2; exit 1; }

[ -d "$state" ] || die "$state does not exist: create it on the runner's disk (e.g. \$RUNNER_TEMP) and mount it"
fs=$(stat -f -c %T "$state")
case $fs in
  overlayfs | overlay)
    die "$state is on overlayfs, where containerd's overlayfs snapshotter cannot run: mount a directory of the runner's disk there (docker run --volume HOST_DIR:$state)" ;;
esac

if [ -f "$cgroup/cgroup.controllers" ]; then
  if [ -e "$cgroup/cgroup.type" ]; then
    die "cgroup v2 and $cgroup is not the root cgroup (a private cgroup namespace): the kubelet cannot enable controllers for its pods there; run the container with --cgroupns=host"
  fi
  version="v2 (the root cgroup; controllers: $(cat "$cgroup/cgroup.controllers"))"
elif [ -e "$cgroup/cpu" ] || [ -e "$cgroup/memory" ]; then
  version=v1
else
  die "no cgroup hierarchy under $cgroup: run the job on a Linux host or a privileged container"
fi
echo "runner-check: state in $state on $fs; cgroup $version"
