# Shared by run_tests.sh, demo.sh and the benchmarks: where PostgreSQL is,
# who runs the servers, and how to build and install the extension.

export PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
PGBIN="$("$PG_CONFIG" --bindir)"
export PATH="$PGBIN:$PATH"

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

# PostgreSQL refuses to run as root: as root, servers and tests run as the
# unprivileged "postgres" user (created by Debian's postgresql packages).
if [ "$(id -u)" -eq 0 ]; then
	RUN_AS=(runuser -u postgres --)
	RUN_USER=postgres
else
	RUN_AS=()
	RUN_USER="$(id -un)"
fi

# Builds and installs the extension from the tree at $1.
build_and_install() {
	make -C "$1" -s PG_CONFIG="$PG_CONFIG"
	"${SUDO[@]}" make -C "$1" -s install PG_CONFIG="$PG_CONFIG"
}

# Copies the tree at $1 to a fresh directory the server user owns, prints it.
# The repository may live where that user cannot write (or even read).
copy_for_run_user() {
	local dest
	dest="$(mktemp -d /tmp/metric_anomaly.XXXXXX)"
	rsync -a --exclude .git "$1"/ "$dest"/
	if [ "$(id -u)" -eq 0 ]; then chown -R "$RUN_USER" "$dest"; fi
	chmod 755 "$dest"
	echo "$dest"
}

# Starts a throwaway cluster in a new directory, as the server user, on
# port $1 with extra postgresql.conf lines $2; sets PGDATA_DIR and PGPORT
# and stops it when the script exits.
start_cluster() {
	local port="$1" conf="$2"
	PGDATA_DIR="$(mktemp -d /tmp/metric_anomaly_pg.XXXXXX)"
	if [ "$(id -u)" -eq 0 ]; then chown "$RUN_USER" "$PGDATA_DIR"; fi
	"${RUN_AS[@]}" initdb -D "$PGDATA_DIR/data" -A trust -U postgres >/dev/null
	printf '%s\n' "listen_addresses = ''" "unix_socket_directories = '$PGDATA_DIR'" \
		"port = $port" "$conf" >>"$PGDATA_DIR/data/postgresql.conf"
	"${RUN_AS[@]}" pg_ctl -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w start >/dev/null
	export PGHOST="$PGDATA_DIR" PGPORT="$port" PGUSER=postgres
	trap stop_cluster EXIT
}

stop_cluster() {
	if [ -n "${PGDATA_DIR:-}" ] && [ -d "$PGDATA_DIR/data" ]; then
		"${RUN_AS[@]}" pg_ctl -D "$PGDATA_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$PGDATA_DIR"
	fi
}

# psql against the throwaway cluster, quiet and strict.
q() {
	"${RUN_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		psql -X -q -v ON_ERROR_STOP=1 "$@"
}
