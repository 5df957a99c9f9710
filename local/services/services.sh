#!/usr/bin/env bash
# Real backing services for integration tests, without Docker:
# PostgreSQL, Redis, ClickHouse, a Kinesis API (kinesalite) and a Kafka-protocol
# broker (librdkafka's mock cluster), each as a non-root process on its own port,
# with data, logs and pid files under one folder.
#
#   bash local/services/services.sh start [names...]   install what is missing, start, wait, print URLs
#   bash local/services/services.sh stop [names...]    stop what this script started
#   bash local/services/services.sh status [names...]
#   bash local/services/services.sh env [names...]     `export X=...` lines of the running services
#   bash local/services/services.sh clean              stop everything and delete the folder
#
# Names: postgres redis clickhouse kinesis kafka (default: all).
# Environment (all optional):
#   QICORE_SERVICES_DIR        folder for data, logs, pids, env   (/tmp/qicore-services)
#   QICORE_PG_PORT             55432
#   QICORE_REDIS_PORT          56379
#   QICORE_CLICKHOUSE_PORT     58123 (HTTP)      QICORE_CLICKHOUSE_TCP_PORT  59000 (native)
#   QICORE_KINESIS_PORT        54567
#   QICORE_KAFKA_BROKER_COUNT  1 (brokers in the mock cluster; its ports are chosen by the kernel)
#   QICORE_KAFKA_TOPICS        topics to create up front, e.g. "trades:3 books:1"
#                              (the mock has no CreateTopics API; other topics auto-create with 4 partitions)
#   QICORE_SERVICES_TIMEOUT    seconds to wait for each service to be ready (60)
# After `start`, `source "$QICORE_SERVICES_DIR/env"` (or eval "$(... env)") sets
# DATABASE_URL, REDIS_URL, CLICKHOUSE_URL, KINESIS_ENDPOINT and KAFKA_BROKERS.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
DIR=${QICORE_SERVICES_DIR:-/tmp/qicore-services}
PG_PORT=${QICORE_PG_PORT:-55432}
REDIS_PORT=${QICORE_REDIS_PORT:-56379}
CH_PORT=${QICORE_CLICKHOUSE_PORT:-58123}
CH_TCP_PORT=${QICORE_CLICKHOUSE_TCP_PORT:-59000}
KINESIS_PORT=${QICORE_KINESIS_PORT:-54567}
KAFKA_BROKER_COUNT=${QICORE_KAFKA_BROKER_COUNT:-1}
KAFKA_TOPICS=${QICORE_KAFKA_TOPICS:-}
TIMEOUT=${QICORE_SERVICES_TIMEOUT:-60}
ALL_SERVICES=(postgres redis clickhouse kinesis kafka)
# kinesalite and the Kafka mock run as this unprivileged user when the script runs as root.
TOOL_USER=qicore-svc

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

svc_dir() { printf '%s/%s' "$DIR" "$1"; }
pid_file() { printf '%s/%s/pid' "$DIR" "$1"; }
log_file() { printf '%s/%s/%s.log' "$DIR" "$1" "$1"; }
# where a launched process's stdout and stderr go: the log itself for the servers that have none of their own
out_file() {
  case $1 in
    kinesis | kafka) log_file "$1" ;;
    *) printf '%s/%s/stdout.log' "$DIR" "$1" ;;
  esac
}
# chown for the service's user, only when running as root
own() {
  local user=$1
  shift
  if is_root; then chown "$user:$user" "$@"; fi
}

# user that runs a service (only meaningful as root; otherwise everything runs as the caller)
svc_user() {
  case $1 in
    postgres) echo postgres ;;
    redis) echo redis ;;
    clickhouse) echo clickhouse ;;
    *) echo "$TOOL_USER" ;;
  esac
}

# pattern that the command line of a service's process must contain, to never signal a stranger
svc_pattern() {
  case $1 in
    postgres) echo postgres ;;
    redis) echo redis-server ;;
    clickhouse) echo clickhouse-server ;;
    kinesis) echo kinesalite ;;
    kafka) echo kafka-mock ;;
  esac
}

# runs "$@" as user $1 (plain exec when not root)
as_user() {
  local user=$1
  shift
  exec 9>&- # the lock on $DIR/.lock stays with this script
  if is_root; then
    exec setpriv --reuid="$user" --regid="$user" --init-groups env HOME="$DIR" USER="$user" LOGNAME="$user" "$@"
  else
    exec "$@"
  fi
}

# pid of the running service, or nothing (pid file present, process alive, command line matches)
running_pid() {
  local name=$1 file pid
  file=$(pid_file "$name")
  [ -s "$file" ] || return 1
  pid=$(head -n1 "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$(svc_pattern "$name")"* ]] || return 1
  echo "$pid"
}

# the process exists and is no zombie (a zombie's parent may never reap it: it counts as gone)
alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

ensure_port_free() {
  local name=$1 port=$2
  if port_open "$port"; then
    local who
    who=$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n1 || true)
    die "$name: port $port is already in use by a process this script did not start (${who:-unknown}). Stop it, or choose another port (see the QICORE_*_PORT variables at the top of $0)."
  fi
}

log_tail() {
  local name=$1 f
  for f in "$(log_file "$name")" "$(svc_dir "$name")/stdout.log" "$(svc_dir "$name")/clickhouse.err.log"; do
    if [ -s "$f" ]; then
      printf -- '----- last lines of %s -----\n' "$f" >&2
      tail -n 25 "$f" >&2
    fi
  done
}

fail_service() {
  local name=$1
  shift
  log_tail "$name"
  die "$name: $* (log: $(log_file "$name"))"
}

url_of() {
  case $1 in
    postgres) echo "postgres://postgres@127.0.0.1:$PG_PORT/qicore_test" ;;
    redis) echo "redis://127.0.0.1:$REDIS_PORT" ;;
    clickhouse) echo "http://127.0.0.1:$CH_PORT" ;;
    kinesis) echo "http://127.0.0.1:$KINESIS_PORT" ;;
    kafka) [ -s "$(svc_dir kafka)/bootstrap" ] && head -n1 "$(svc_dir kafka)/bootstrap" ;;
  esac
}

env_var_of() {
  case $1 in
    postgres) echo DATABASE_URL ;;
    redis) echo REDIS_URL ;;
    clickhouse) echo CLICKHOUSE_URL ;;
    kinesis) echo KINESIS_ENDPOINT ;;
    kafka) echo KAFKA_BROKERS ;;
  esac
}

# ---------------------------------------------------------------- readiness probes

kinesis_list_streams() {
  curl -fsS --max-time 2 -X POST "http://127.0.0.1:$KINESIS_PORT/" \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
    -H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0' \
    -d '{}'
}

probe() {
  case $1 in
    postgres) "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 ;;
    redis) [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] ;;
    clickhouse) [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$CH_PORT/?query=SELECT%201" 2>/dev/null)" = 1 ] ;;
    kinesis) [[ $(kinesis_list_streams 2>/dev/null) == *StreamNames* ]] ;;
    kafka)
      local boot first
      boot=$(url_of kafka) || return 1
      first=${boot%%,*}
      port_open "${first##*:}"
      ;;
  esac
}

# waits until the service answers; fails early when its process died
wait_ready() {
  local name=$1 deadline=$((SECONDS + TIMEOUT))
  while :; do
    probe "$name" && return 0
    # the pid file's process, whatever it runs yet (it may still be exec-ing into the server)
    alive "$(cat "$(pid_file "$name")" 2>/dev/null || echo 0)" ||
      fail_service "$name" "the process exited during start-up"
    [ $SECONDS -lt $deadline ] || fail_service "$name" "not ready after ${TIMEOUT}s"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- installation

missing_packages() {
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] || printf '%s ' "$p"
  done
}

ensure_packages() {
  local missing
  missing=$(missing_packages "$@")
  [ -n "$missing" ] || return 0
  is_root || die "missing Debian packages: ${missing% } - install them as root (apt-get install -y $missing) or run this script as root"
  local apt_log="$DIR/apt.log" t0=$SECONDS
  missing=${missing% }
  log "installing $missing (apt-get, log: $apt_log)"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  if ! apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >>"$apt_log" 2>&1; then
    # the package lists may be missing or stale on a fresh machine
    apt-get update -q -o DPkg::Lock::Timeout=300 >>"$apt_log" 2>&1 || true
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >>"$apt_log" 2>&1 ||
      { tail -n 20 "$apt_log" >&2; die "apt-get install $missing failed (log: $apt_log)"; }
  fi
  log "installed $missing in $((SECONDS - t0))s"
}

# highest installed PostgreSQL server's bin folder
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

ensure_tool_user() {
  is_root || return 0
  id -u "$TOOL_USER" >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TOOL_USER"
}

# the packages every requested service needs, installed in one apt-get call
install_prerequisites() {
  local pkgs=(curl) name
  for name in "$@"; do
    case $name in
      postgres) pg_bin >/dev/null || pkgs+=(postgresql) ;;
      redis) pkgs+=(redis-server redis-tools) ;;
      clickhouse) pkgs+=(clickhouse-server clickhouse-client) ;;
      kafka) pkgs+=(librdkafka-dev gcc libc6-dev) ;;
    esac
  done
  local clickhouse_was_running=0
  pgrep -x clickhouse-serv >/dev/null 2>&1 && clickhouse_was_running=1
  ensure_packages "${pkgs[@]}"
  # On machines without a policy-rc.d that forbids it, installing clickhouse-server starts the system
  # instance (ports 8123/9000): that one was started by this script, so stop it again.
  if [ $clickhouse_was_running = 0 ] && is_root && pgrep -x clickhouse-serv >/dev/null 2>&1 &&
    ! pgrep -f "$DIR/clickhouse" >/dev/null 2>&1; then
    log "stopping the system clickhouse-server that its package install started"
    invoke-rc.d clickhouse-server stop >/dev/null 2>&1 || service clickhouse-server stop >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- per-service start

# keeps the previous run's logs as *.prev, so that an error shows this run's lines only
rotate_logs() {
  local f
  for f in "$(svc_dir "$1")"/*.log; do
    [ -f "$f" ] && mv -f "$f" "$f.prev"
  done
  return 0
}

# prepares $DIR/<name> owned by the service's user
prepare_dir() {
  local name=$1 d
  d=$(svc_dir "$name")
  mkdir -p "$d"
  if is_root; then
    chown "$(svc_user "$name"):$(svc_user "$name")" "$d"
    chmod 755 "$d"
    setpriv --reuid="$(svc_user "$name")" --regid="$(svc_user "$name")" --init-groups test -w "$d" ||
      die "$name: its user $(svc_user "$name") cannot write $d - every folder above it must be searchable by others (chmod o+x), or set QICORE_SERVICES_DIR to a folder under /tmp"
  fi
}

# starts "$@" in the background as the service's user in a session of its own; records its pid
launch() {
  local name=$1
  shift
  local d pid
  d=$(svc_dir "$name")
  (
    cd "$d"
    # setpriv, setsid and the server exec one another: $! stays the server's pid. A background child of
    # a non-interactive shell leads no process group, so setsid makes a new session without forking.
    as_user "$(svc_user "$name")" setsid "$@"
  ) </dev/null >>"$(out_file "$name")" 2>&1 &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
}

start_postgres() {
  local bin d data
  bin=$(pg_bin) || die "postgres: no PostgreSQL server under /usr/lib/postgresql/*/bin"
  prepare_dir postgres
  d=$(svc_dir postgres)
  data=$d/data
  if [ ! -s "$data/PG_VERSION" ]; then
    log "postgres: initdb $data"
    rm -rf "$data"
    (cd "$(svc_dir postgres)" && as_user "$(svc_user postgres)" "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync) \
      >>"$d/stdout.log" 2>&1 || fail_service postgres "initdb failed"
  fi
  touch "$(log_file postgres)"
  mkdir -p "$d/socket"
  own postgres "$(log_file postgres)" "$d/socket"
  rm -f "$data/postmaster.pid" # stale after a crash or reboot; running_pid said no server runs
  # pg_ctl puts the postmaster into the background; setsid keeps it out of the caller's process group
  (cd "$(svc_dir postgres)" && as_user "$(svc_user postgres)" setsid "$bin/pg_ctl" -D "$data" -l "$(log_file postgres)" -w -t "$TIMEOUT" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$d/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start) >>"$d/stdout.log" 2>&1 || fail_service postgres "pg_ctl start failed"
  head -n1 "$data/postmaster.pid" >"$(pid_file postgres)"
  wait_ready postgres
  if [ "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='qicore_test'")" != 1 ]; then
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE qicore_test' >/dev/null ||
      fail_service postgres "could not create database qicore_test"
  fi
}

start_redis() {
  local d
  prepare_dir redis
  d=$(svc_dir redis)
  cat >"$d/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
dir $d
logfile $(log_file redis)
daemonize no
save ""
appendonly no
EOF
  launch redis /usr/bin/redis-server "$d/redis.conf"
  wait_ready redis
}

start_clickhouse() {
  local d data
  prepare_dir clickhouse
  d=$(svc_dir clickhouse)
  data=$d/data
  mkdir -p "$d/etc" "$data"
  # owned by clickhouse too (18.16 writes its preprocessed configs under <path>/preprocessed_configs)
  cat >"$d/etc/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$(log_file clickhouse)</log>
        <errorlog>$d/clickhouse.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <!-- no interserver_http_port: no replication port is opened; 18.16 has no MySQL port -->
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$data/</path>
    <tmp_path>$data/tmp/</tmp_path>
    <user_files_path>$data/user_files/</user_files_path>
    <format_schema_path>$data/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
  cat >"$d/etc/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
            <!-- 18.16 only: LowCardinality(...) columns are experimental there -->
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  if is_root; then chown -R clickhouse:clickhouse "$d/etc" "$data"; fi
  launch clickhouse /usr/sbin/clickhouse-server --config-file="$d/etc/config.xml"
  wait_ready clickhouse
}

start_kinesis() {
  local module=$REPO_ROOT/node_modules/kinesalite d
  [ -f "$module/package.json" ] || die "kinesis: $module is missing - kinesalite is a devDependency of the project: run 'npm ci' (or 'npm install') in $REPO_ROOT first"
  command -v node >/dev/null || die "kinesis: node is not on PATH"
  prepare_dir kinesis
  d=$(svc_dir kinesis)
  if is_root && ! setpriv --reuid="$TOOL_USER" --regid="$TOOL_USER" --init-groups test -r "$module/package.json" -a -r "$SCRIPT_DIR/kinesalite.cjs"; then
    die "kinesis: user $TOOL_USER cannot read $module or $SCRIPT_DIR (every folder above them must be searchable by others: chmod o+rx)"
  fi
  mkdir -p "$d/data"
  own "$TOOL_USER" "$d/data"
  # kinesalite's own CLI (node_modules/.bin/kinesalite) would listen on every interface: this wrapper
  # runs the same server on 127.0.0.1
  launch kinesis "$(command -v node)" "$SCRIPT_DIR/kinesalite.cjs" "$REPO_ROOT" "$KINESIS_PORT" "$d/data"
  wait_ready kinesis
}

build_kafka_mock() {
  local src=$SCRIPT_DIR/kafka-mock.c bin=$DIR/bin/kafka-mock sum
  sum=$(sha256sum "$src" | cut -d' ' -f1)
  if [ -x "$bin" ] && [ "$(cat "$bin.sha256" 2>/dev/null)" = "$sum" ]; then return 0; fi
  mkdir -p "$DIR/bin"
  log "kafka: compiling $src"
  gcc -O2 -Wall -Wextra -o "$bin.tmp" "$src" -lrdkafka -lpthread 2>"$DIR/bin/kafka-mock.build.log" ||
    { cat "$DIR/bin/kafka-mock.build.log" >&2; die "kafka: compiling $src failed"; }
  mv "$bin.tmp" "$bin"
  echo "$sum" >"$bin.sha256"
}

start_kafka() {
  local d args topic
  build_kafka_mock
  prepare_dir kafka
  d=$(svc_dir kafka)
  rm -f "$d/bootstrap"
  args=(-b "$KAFKA_BROKER_COUNT" -o "$d/bootstrap")
  for topic in $KAFKA_TOPICS; do args+=(-t "$topic"); done
  launch kafka "$DIR/bin/kafka-mock" "${args[@]}"
  wait_ready kafka
}

# ---------------------------------------------------------------- commands

ports_of() {
  case $1 in
    postgres) echo "$PG_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    clickhouse) echo "$CH_PORT $CH_TCP_PORT" ;;
    kinesis) echo "$KINESIS_PORT" ;;
    kafka) echo "" ;;
  esac
}

write_env() {
  local name url lines=""
  for name in "${ALL_SERVICES[@]}"; do
    running_pid "$name" >/dev/null || continue
    url=$(url_of "$name") || continue
    lines+="export $(env_var_of "$name")=$url"$'\n'
  done
  printf '%s' "$lines" >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

print_env() {
  local name url
  for name in "$@"; do
    if running_pid "$name" >/dev/null && url=$(url_of "$name"); then
      echo "export $(env_var_of "$name")=$url"
    else
      log "$name is not running (bash $0 start $name)"
    fi
  done
}

cmd_start() {
  local name t0=$SECONDS started=()
  ensure_tool_user
  install_prerequisites "$@"
  for name in "$@"; do
    if running_pid "$name" >/dev/null && probe "$name"; then
      log "$name: already running (pid $(running_pid "$name"))"
      continue
    fi
    if running_pid "$name" >/dev/null; then
      log "$name: process $(running_pid "$name") does not answer at $(url_of "$name" || echo 'its address') (other settings?) - restarting it"
      stop_one "$name"
    fi
    local port
    for port in $(ports_of "$name"); do ensure_port_free "$name" "$port"; done
    local t1=$SECONDS
    rotate_logs "$name"
    "start_$name"
    log "$name: ready in $((SECONDS - t1))s (pid $(running_pid "$name"), log $(log_file "$name"))"
    started+=("$name")
  done
  write_env
  [ ${#started[@]} -eq 0 ] || log "started ${started[*]} in $((SECONDS - t0))s"
  log "connection URLs (also in $DIR/env):"
  print_env "$@"
}

stop_one() {
  local name=$1 pid deadline
  pid=$(running_pid "$name") || { rm -f "$(pid_file "$name")"; return 0; }
  if [ "$name" = postgres ] && [ -s "$(svc_dir postgres)/data/postmaster.pid" ]; then
    (cd "$(svc_dir postgres)" && as_user "$(svc_user postgres)" "$(pg_bin)/pg_ctl" -D "$(svc_dir postgres)/data" -m fast -w -t 30 stop) \
      >>"$(svc_dir postgres)/stdout.log" 2>&1 || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  deadline=$((SECONDS + 30))
  while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if alive "$pid"; then
    log "$name: pid $pid ignored SIGTERM for 30s - killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
  [ "$name" != kafka ] || rm -f "$(svc_dir kafka)/bootstrap"
  log "$name: stopped (pid $pid)"
}

cmd_stop() {
  local name pid pids=() rc=0
  # in parallel: each server takes a second or two to shut down
  for name in "$@"; do
    stop_one "$name" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ $rc = 0 ] || die "some services did not stop cleanly"
  [ ! -d "$DIR" ] || write_env
}

cmd_status() {
  local name pid rc=0
  for name in "$@"; do
    if pid=$(running_pid "$name"); then
      if probe "$name"; then
        printf '%-10s running  pid %-7s %s\n' "$name" "$pid" "$(url_of "$name")"
      else
        printf '%-10s starting/not answering  pid %-7s log %s\n' "$name" "$pid" "$(log_file "$name")"
        rc=1
      fi
    else
      printf '%-10s stopped\n' "$name"
      rc=1
    fi
  done
  return $rc
}

main() {
  local cmd=${1:-}
  [ -n "$cmd" ] || usage
  shift
  local names=("$@") name
  [ ${#names[@]} -gt 0 ] || names=("${ALL_SERVICES[@]}")
  for name in "${names[@]}"; do
    [[ " ${ALL_SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name' (known: ${ALL_SERVICES[*]})"
  done
  case $cmd in
    start | stop | clean)
      mkdir -p "$DIR"
      chmod 755 "$DIR"
      # one start/stop at a time per folder
      exec 9>"$DIR/.lock"
      flock -w 300 9 || die "another services.sh holds $DIR/.lock"
      ;;
  esac
  case $cmd in
    start) cmd_start "${names[@]}" ;;
    stop) cmd_stop "${names[@]}" ;;
    clean)
      cmd_stop "${ALL_SERVICES[@]}"
      rm -rf "$DIR"
      log "removed $DIR"
      ;;
    status) cmd_status "${names[@]}" ;;
    env) print_env "${names[@]}" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
