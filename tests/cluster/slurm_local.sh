#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (loopback only, no accounting), so that the
# workflow's SLURM profile can be tested for real: tests/test_slurm.py and CI use it.
#
#   tests/cluster/slurm_local.sh start   # as root: install if missing, configure, start, wait for "idle"
#   tests/cluster/slurm_local.sh stop    # cancel every job, stop the daemons this script started
#
# Debian/Ubuntu only (apt-get). It writes /etc/slurm/slurm.conf (the job step's inner srun
# reads only that path: SLURM_CONF is stripped inside snakemake's jobs) and refuses to touch
# one it did not write, so it never clobbers a real cluster's configuration.
# Environment: WHYLAB_SLURM_BASE (state, pid and log files; default /var/tmp/whylab-slurm),
# WHYLAB_SLURM_WAIT_S (how long start waits for each daemon; default 60).
set -euo pipefail

BASE=${WHYLAB_SLURM_BASE:-/var/tmp/whylab-slurm}
WAIT_S=${WHYLAB_SLURM_WAIT_S:-60}
CONF=/etc/slurm/slurm.conf
MARKER="# written by whylab tests/cluster/slurm_local.sh"
MUNGE_PID=/run/munge/munged.pid
PACKAGES=(munge slurmctld slurmd slurm-client)

log() { echo "slurm_local: $*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts daemons)"
}

alive() {  # alive PIDFILE: the process named in PIDFILE is running
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_missing() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {
    if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's config"
    fi
    local host cpus mem
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS, which the test process may have set
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    [[ -n $mem ]] || die "could not read RealMemory from 'slurmd -C'"
    mem=$((mem - 1024))  # headroom: slurmd drains a node that reports less than configured
    install -d "$BASE/state/ctld" "$BASE/state/d" "$BASE/run" "$BASE/log" /etc/slurm
    cat >"$CONF" <<EOF
$MARKER
# $(date -u +%FT%TZ); its 'stop' removes this file
ClusterName=whylab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# squeue (the status command without accounting) sees a finished job only for MinJobAge
# seconds: keep it well above the plugin's status-check interval.
MinJobAge=300
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF (node $host, $cpus CPUs, ${mem} MB)"
}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND for up to WAIT_S seconds
    local what=$1 deadline=$((SECONDS + WAIT_S))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
    log "$what ready"
}

munge_ok() { munge -n | unmunge; }
node_idle() { [[ $(sinfo -h -o %T 2>/dev/null) == idle ]]; }

start_munge() {
    if munge_ok >/dev/null 2>&1; then
        log "munged already answering; using it"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 700 /etc/munge
        runuser -u munge -- mungekey --create --keyfile /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$BASE/run/munged.ours"  # stop only ends a munged this script started
    wait_for munge munge_ok || die "munged did not answer within ${WAIT_S}s"
}

start() {
    need_root
    install_missing
    install -d "$BASE/run" "$BASE/log"
    if alive "$BASE/run/slurmctld.pid" && alive "$BASE/run/slurmd.pid"; then
        log "already running"
    else
        if alive "$BASE/run/slurmctld.pid" || alive "$BASE/run/slurmd.pid"; then
            log "only one daemon of an earlier start is alive; restarting"
            stop
        fi
        for daemon in slurmctld slurmd; do
            if pgrep -x "$daemon" >/dev/null; then
                die "a $daemon not started by this script is running; stop it first"
            fi
        done
        write_conf
        start_munge
        slurmctld
        wait_for slurmctld scontrol ping || { tail -n 20 "$BASE/log/slurmctld.log" >&2; die "slurmctld did not answer"; }
        slurmd
    fi
    if ! wait_for "node (idle)" node_idle; then
        sinfo -N -l >&2 || true
        tail -n 20 "$BASE/log/slurmctld.log" "$BASE/log/slurmd.log" >&2 || true
        die "the node did not become idle within ${WAIT_S}s"
    fi
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, then KILL after 10 s
    local name=$1 pidfile=$2 pid
    alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || { log "$name stopped"; return 0; }
        sleep 0.5
    done
    log "$name ignored TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

stop() {
    need_root
    if alive "$BASE/run/slurmctld.pid"; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for _ in $(seq 1 20); do  # let slurmd end the job steps before it goes
                [[ -z $(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pidfile slurmd "$BASE/run/slurmd.pid"
    stop_pidfile slurmctld "$BASE/run/slurmctld.pid"
    if [[ -e $BASE/run/munged.ours ]]; then
        stop_pidfile munged "$MUNGE_PID"
        rm -f "$BASE/run/munged.ours"
    fi
    # the next start begins from a clean state (job ids from 1, no leftover node state)
    rm -rf "$BASE/state" "$BASE/run"
    if [[ -e $CONF ]] && grep -qxF "$MARKER" "$CONF"; then
        rm -f "$CONF"
    fi
    log "stopped (logs kept in $BASE/log)"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
