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
