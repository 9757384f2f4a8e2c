#!/usr/bin/env bash
# Installs (from Debian) and starts what the end-to-end tests of the deploy targets run against
# on this machine: a one-node Slurm (slurm-wlm + munge, the recipe of DESIGN.md §6), Prometheus
# and promtool, sshd + iproute2 for the ssh target across network namespaces, and Chromium for
# the headless check of the experiment report page. Needs root;
# idempotent (a second run changes nothing). `.ci/run` calls it and then requires the services
# (ROSETTA_REQUIRE_SERVICES=1), so a test that needs one fails instead of skipping.
set -euo pipefail

if [[ "$(id -u)" != 0 ]]; then
    echo "ci-services: not root; the Slurm, ssh and Prometheus tests will skip" >&2
    exit 0
fi

missing=()
for command in sbatch slurmctld slurmd munged prometheus promtool sshd ip chromium; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
if (( ${#missing[@]} )); then
    echo "ci-services: installing slurm-wlm munge prometheus openssh-server iproute2 chromium (missing: ${missing[*]})" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge prometheus openssh-server iproute2 chromium >/dev/null
fi

# munge: the key comes with the package; the daemon runs as the munge user.
install -d -o munge -g munge -m 0755 /run/munge
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force
fi

host="$(hostname -s)"
cpus="$(nproc)"
conf=/etc/slurm/slurm.conf
want=$(cat <<CONF
# One-node Slurm for Rosetta's tests (written by scripts/ci-services.sh).
ClusterName=rosetta-ci
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} State=UNKNOWN
PartitionName=ci Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [[ ! -f "$conf" || "$(cat "$conf")" != "$want" ]]; then
    printf '%s\n' "$want" > "$conf"
    pkill -x slurmctld 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    sleep 1
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
    state="$(sinfo -h -n "$host" -o %T 2>/dev/null || true)"
    if [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]; then
        echo "ci-services: slurm node ${host} is ${state}; prometheus, promtool, sshd and ip are installed" >&2
        exit 0
    fi
    if [[ "$state" == down* || "$state" == drain* ]]; then
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    fi
    sleep 1
done
echo "ci-services: the slurm node did not become idle; see /var/log/slurm/*.log" >&2
exit 1
