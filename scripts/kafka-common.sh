# kafka-common.sh - what scripts/kafka-local.sh and scripts/kafka-secure.sh
# share: process checks, the clean stop, and the single-node broker settings.
# Sourced, not run. The caller defines log, die, RUN_DIR, DATA_DIR, PID_FILE,
# LOCK_FILE, HOST, STOP_TIMEOUT and CLS_SERVER, SERVER_PROPS before use.

# A process that exists and is not a zombie.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# The broker's pid, if it runs; guards against pid reuse: the process must be
# our broker with our server.properties.
broker_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CLS_SERVER $SERVER_PROPS" || return 1
  echo "$pid"
}

port_open() {
  (exec 2>/dev/null; exec 3<>"/dev/tcp/$HOST/$1")
}

# Clean shutdown (SIGTERM), SIGKILL only after STOP_TIMEOUT seconds.
stop_broker() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 300 9 || die "another $(basename "$0") holds $LOCK_FILE"
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping broker pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    log "broker did not exit within ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

# The settings of a single-node test broker, whatever its listeners.
single_node_props() {
  cat <<EOF
log.dirs=${DATA_DIR}
num.network.threads=2
num.io.threads=4
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=${TH_KAFKA_GROUP_DELAY_MS:-0}
auto.create.topics.enable=false
delete.topic.enable=true
EOF
}
