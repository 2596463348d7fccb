# Sourced by the benchmarks that run SQL on a Postgres you name (bench/trigger_throughput.sh,
# bench/node_search.sh), with `admin_url` and `db` set: afterwards `url` is database `db` on
# that server, migrated by the binary (only `migrate` is used, so any build will do), and
# dropped on exit.
bin="${CARGO_TARGET_DIR:-target}/debug/temporal-bff"
[ -x "$bin" ] || cargo build --quiet --bin temporal-bff
url="${admin_url%/*}/$db"
psql -q "$admin_url" -c "CREATE DATABASE $db"
trap 'psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
DATABASE_URL="$url" "$bin" migrate >/dev/null
