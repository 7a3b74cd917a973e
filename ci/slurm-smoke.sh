#!/bin/bash
# A one-node Slurm cluster on this machine runs a Glass sweep plan as a job
# array, then the indices are merged: the path deploy/slurm/glass-sweep.sbatch
# takes on a real cluster. Needs root (it installs Debian's slurm-wlm and
# munge if missing, and starts munged, slurmctld and slurmd); everything
# else (keys, config, state, logs) lives in a temporary directory and the
# daemons are stopped on exit. Not a CI step: about a minute.
#
#   bash ci/slurm-smoke.sh [SCENARIO]   (default: a 12-run proxy-mode sweep)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
glass=${GLASS:-$here/target/release/glass}
[ -x "$glass" ] || (cd "$here" && cargo build --release --locked -p glass-harness --bin glass)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/glass-slurm.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
mkdir -p "$work"/{munge,state,spool,log,out}
chmod 700 "$work/munge"

# munge: a private key and socket.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --foreground --force --key-file="$work/munge/munge.key" \
  --socket="$work/munge/munge.socket" --pid-file="$work/munge/munged.pid" \
  --log-file="$work/log/munged.log" --seed-file="$work/munge/seed" 2>/dev/null &
pids+=($!)

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024) - 512}' /proc/meminfo)
export SLURM_CONF="$work/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=glass-smoke
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=glass Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
sleep 1
slurmctld -D -i 2>"$work/log/slurmctld.err" &
pids+=($!)
slurmd -D 2>"$work/log/slurmd.err" &
pids+=($!)
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1; done
sinfo

scenario=${1:-}
if [ -z "$scenario" ]; then
  scenario="$here/tests/fixtures/plan-sweep.toml"
  mode=proxy
else
  mode=${GLASS_MODE:-auto}
fi
"$glass" sweep plan "$scenario" --mode "$mode" --out "$work/plan.json"
n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['runs']))" "$work/plan.json")
start=$(date +%s)
# One core per task: two tasks at once on a two-core machine.
job=$(cd "$work/log" && GLASS="$glass" sbatch --parsable --cpus-per-task=1 --array=0-$((n - 1))%2 \
  "$here/deploy/slurm/glass-sweep.sbatch" "$work/plan.json" "$work/out")
echo "submitted array job $job: $n tasks"
while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 2; done
echo "array finished in $(( $(date +%s) - start )) s"
sacct -j "$job" -n -X -o JobID,State,ExitCode 2>/dev/null | head -n 3 || true
"$glass" report merge "$work/out" --out "$work/merged"
python3 - "$work/merged" "$n" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
m = json.load(open(d + "/manifests.json"))
assert [x["index"] for x in m] == list(range(n)), "every index once"
jobs = {x["host"] for x in m}
print(f"merged {len(m)} indices from host(s) {sorted(jobs)}; failed: {[x['index'] for x in m if x['status'] != 'ok']}")
PY
echo "results: $work/merged (report.html)"
