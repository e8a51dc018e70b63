#!/usr/bin/env bash
# kafka-secure.sh - a single-node Kafka broker (KRaft, loopback only) whose
# client listener is SASL_SSL with SCRAM-SHA-512, and whose authorizer
# (StandardAuthorizer) denies everything no ACL allows. For the secured-broker
# tests (tests/kafka/test_kafka_secure.py) and for trying ACLs by hand.
# Uses the jars scripts/kafka-local.sh fetches (same cache); kafka-local.sh
# itself is untouched.
#
# Usage: scripts/kafka-secure.sh COMMAND
#   start      make certificates and users (first time), format, start, wait until ready
#   stop       clean shutdown (SIGTERM), SIGKILL only after a timeout
#   status     exit 0 if the broker runs and its TLS listener answers
#   info       print the path of info.json (bootstrap, CA files, users and passwords)
#   reset      stop + wipe the run directory (certificates, users, data)
#   log [N]    the last N (default 100) lines of the broker log
#
# What start makes in the run directory (all mode 0600/0700):
#   tls/ca.pem            the CA that signed the broker's certificate (trust this)
#   tls/rogue-ca.pem      another CA, which signed nothing here (the untrusted-CA test)
#   tls/broker.p12        the broker's key + certificate (CN/SAN 127.0.0.1, localhost)
#   info.json             {"bootstrap", "ca", "rogue_ca", "users": {name: password}}
# SCRAM-SHA-512 users, added with `kafka-storage format --add-scram`:
#   admin       super user (the broker's own inter-broker login; tests create topics/ACLs with it)
#   trailhound  the worker: only what ACLs grant (docs/operations.md lists them)
#   bridge      the CloudTrail producer: only what ACLs grant
#
# Environment:
#   TH_CACHE_DIR                jar cache root (default $HOME/.cache/trailhound)
#   TH_KAFKA_SECURE_DIR         run directory (default $TH_CACHE_DIR/kafka-secure-run)
#   TH_KAFKA_SECURE_PORT        SASL_SSL port (default 19096; the controller uses PORT+1)
#   TH_KAFKA_SECURE_AUTHORIZER  1 (default) = StandardAuthorizer, deny without ACL; 0 = none
#   TH_KAFKA_READY_TIMEOUT      seconds to wait for ready (default 90)
#   TH_KAFKA_STOP_TIMEOUT       seconds before SIGKILL (default 60)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KAFKA_VERSION=3.9.1                        # the version kafka-local.sh pins
CACHE_ROOT=${TH_CACHE_DIR:-$HOME/.cache/trailhound}
LIBS=$CACHE_ROOT/kafka-$KAFKA_VERSION/libs
RUN_DIR=${TH_KAFKA_SECURE_DIR:-$CACHE_ROOT/kafka-secure-run}
DATA_DIR=$RUN_DIR/kraft-data
TLS=$RUN_DIR/tls
PID_FILE=$RUN_DIR/kafka.pid
LOG_FILE=$RUN_DIR/broker.log
SERVER_PROPS=$RUN_DIR/server.properties
LOG4J_PROPS=$RUN_DIR/log4j.properties
INFO=$RUN_DIR/info.json
LOCK_FILE=$RUN_DIR/.lock
HOST=127.0.0.1
PORT=${TH_KAFKA_SECURE_PORT:-19096}
CONTROLLER_PORT=$((PORT + 1))
AUTHORIZER=${TH_KAFKA_SECURE_AUTHORIZER:-1}
READY_TIMEOUT=${TH_KAFKA_READY_TIMEOUT:-90}
STOP_TIMEOUT=${TH_KAFKA_STOP_TIMEOUT:-60}
CLS_SERVER=kafka.Kafka
CLS_STORAGE=kafka.tools.StorageTool
USERS=(admin trailhound bridge)

if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then JAVA=$JAVA_HOME/bin/java; else JAVA=java; fi

log() { printf 'kafka-secure: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/kafka-common.sh
source "$HERE/kafka-common.sh"


# The TLS listener completes a handshake with a client that trusts our CA.
tls_ready() {
  timeout 5 openssl s_client -connect "$HOST:$PORT" -CAfile "$TLS/ca.pem" -verify_return_error \
    -brief </dev/null >/dev/null 2>&1
}

password() { head -c 18 /dev/urandom | base64 | tr -d '/+=' ; }

# A CA, a broker certificate it signs (SAN: 127.0.0.1 and localhost, as
# librdkafka verifies the host name), and a second CA that signs nothing.
make_tls() {
  # made once per run directory; again when the broker's certificate expires
  # within a day (they are valid 30 days, and CI machines are reused)
  if [[ -f $TLS/broker.p12 && -f $TLS/ca.pem && -f $TLS/rogue-ca.pem && -f $TLS/store.pass ]] &&
     openssl x509 -checkend 86400 -noout -in "$TLS/broker.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  rm -rf "$TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  local d=$TLS
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=trailhound test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=trailhound rogue CA" \
    -keyout "$d/rogue-ca.key" -out "$d/rogue-ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/broker.key" -out "$d/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
    >"$d/broker.ext"
  openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$d/broker.ext" -out "$d/broker.pem" 2>/dev/null
  password >"$d/store.pass"
  openssl pkcs12 -export -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
    -name broker -out "$d/broker.p12" -passout "file:$d/store.pass"
  chmod 600 "$d"/*
}

make_users() {
  [[ -f $RUN_DIR/users ]] && return 0
  local u
  (umask 077; for u in "${USERS[@]}"; do printf '%s %s\n' "$u" "$(password)"; done >"$RUN_DIR/users")
}

user_pw() { awk -v u="$1" '$1 == u {print $2}' "$RUN_DIR/users"; }

write_info() {
  local u sep="" users=""
  for u in "${USERS[@]}"; do users+="$sep\"$u\": \"$(user_pw "$u")\""; sep=", "; done
  (umask 077; cat >"$INFO" <<EOF
{"bootstrap": "$HOST:$PORT", "ca": "$TLS/ca.pem", "rogue_ca": "$TLS/rogue-ca.pem",
 "mechanism": "SCRAM-SHA-512", "security_protocol": "SASL_SSL", "authorizer": $AUTHORIZER,
 "users": {$users}}
EOF
  )
}

write_configs() {
  local admin_pw store_pw
  admin_pw=$(user_pw admin)
  store_pw=$(<"$TLS/store.pass")
  (umask 077; cat >"$SERVER_PROPS" <<EOF
# generated by scripts/kafka-secure.sh on each start; edits are overwritten
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@${HOST}:${CONTROLLER_PORT}
listeners=SASL_SSL://${HOST}:${PORT},CONTROLLER://${HOST}:${CONTROLLER_PORT}
advertised.listeners=SASL_SSL://${HOST}:${PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${admin_pw}";
ssl.keystore.type=PKCS12
ssl.keystore.location=${TLS}/broker.p12
ssl.keystore.password=${store_pw}
ssl.key.password=${store_pw}
ssl.client.auth=none
# the broker is its own client (inter-broker listener): it trusts the test CA
ssl.truststore.type=PEM
ssl.truststore.location=${TLS}/ca.pem
ssl.endpoint.identification.algorithm=https
EOF
  if [[ $AUTHORIZER == 1 ]]; then
    # The controller listener (loopback, PLAINTEXT) is ANONYMOUS: the broker
    # half of this combined node talks to the controller half through it.
    cat >>"$SERVER_PROPS" <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
  fi
  cat >>"$SERVER_PROPS" <<EOF
$(single_node_props)
log.cleaner.dedupe.buffer.size=16777216
EOF
  )
  cat >"$LOG4J_PROPS" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
# denials at INFO: the log names the principal, operation and resource an ACL is missing for
log4j.logger.kafka.authorizer.logger=INFO
EOF
}

cmd_start() {
  mkdir -p "$RUN_DIR"
  chmod 700 "$RUN_DIR"
  "$HERE/kafka-local.sh" fetch
  exec 9>"$LOCK_FILE"
  flock -w 300 9 || die "another kafka-secure.sh holds $LOCK_FILE"
  local pid
  if pid=$(broker_pid); then
    wait_ready "$pid" && { log "already running (pid $pid) on $HOST:$PORT"; return 0; }
    die "broker pid $pid runs but is not ready; try: $0 stop"
  fi
  rm -f "$PID_FILE"
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $HOST:$p is already in use (set TH_KAFKA_SECURE_PORT)"
  done
  make_tls
  make_users
  write_configs
  write_info
  if [[ ! -f $DATA_DIR/meta.properties ]]; then
    local cid u scram=()
    for u in "${USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(user_pw "$u")]")
    done
    cid=$("$JAVA" -Xmx256m -cp "$LIBS/*" "$CLS_STORAGE" random-uuid 2>/dev/null)
    log "formatting $DATA_DIR (cluster id $cid) with SCRAM-SHA-512 users ${USERS[*]}"
    "$JAVA" -Xmx256m -Dlog4j.configuration="file:$LOG4J_PROPS" -cp "$LIBS/*" "$CLS_STORAGE" \
      format -t "$cid" -c "$SERVER_PROPS" "${scram[@]}" >/dev/null || die "storage format failed"
  fi
  [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  local t0=$SECONDS
  setsid "$JAVA" -Xms256m -Xmx768m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$LOG4J_PROPS" -Dkafka.logs.dir="$RUN_DIR" \
    -cp "$LIBS/*" $CLS_SERVER "$SERVER_PROPS" </dev/null >"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  log "started broker pid $pid, waiting up to ${READY_TIMEOUT}s for SASL_SSL on $HOST:$PORT"
  wait_ready "$pid" || { tail -n 40 "$LOG_FILE" >&2; die "not ready within ${READY_TIMEOUT}s"; }
  log "ready on $HOST:$PORT after $((SECONDS - t0)) s (info: $INFO)"
}

# Ready = the server says it started and the TLS listener completes a handshake.
wait_ready() {
  local pid=$1 deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    alive "$pid" || { tail -n 40 "$LOG_FILE" >&2; die "broker process $pid exited during startup"; }
    if grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null && tls_ready; then return 0; fi
    sleep 0.5
  done
  return 1
}

cmd_stop() { stop_broker; }

cmd_status() {
  local pid
  pid=$(broker_pid) || { echo stopped; return 3; }
  tls_ready && { echo "running (pid $pid, SASL_SSL $HOST:$PORT)"; return 0; }
  echo "starting or unhealthy (pid $pid)"
  return 1
}

cmd_reset() {
  cmd_stop
  rm -rf "$DATA_DIR" "$TLS"
  rm -f "$PID_FILE" "$LOG_FILE" "$LOG_FILE.1" "$SERVER_PROPS" "$LOG4J_PROPS" "$INFO" \
    "$RUN_DIR/users" "$LOCK_FILE"
  rmdir "$RUN_DIR" 2>/dev/null || true
}

case ${1:-} in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  info)   echo "$INFO" ;;
  reset)  cmd_reset ;;
  log)    tail -n "${2:-100}" "$LOG_FILE" ;;
  -h|--help|help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
