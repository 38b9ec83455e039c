# Shell functions shared by test/run, demo/run and the benchmarks in bench/.
# Source it after setting $top (the repository root).
#
#   opsdata_workdir PREFIX      make $work, a temp directory the servers can write
#                               (in $TMPDIR, /tmp by default)
#   opsdata_private_install     copy PostgreSQL and install this tree's build,
#                               and the test modules of test/modules/, under
#                               $work/install; sets $bindir and $pgxs
#   opsdata_system_install      use the installed PostgreSQL as is; sets $bindir and $pgxs
#   run_pg CMD...               run as the postgres user when root, with $bindir first in PATH
#   opsdata_server_start DIR [CONF...]
#                               initdb DIR/data and start a server listening on a
#                               Unix socket in DIR only, pg_opsdata preloaded; extra
#                               postgresql.conf lines as arguments
#   opsdata_server_stop DIR     stop it
#   opsdata_cleanup             stop every server under $work and remove it (KEEP=1 keeps it)

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config)

as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)

opsdata_workdir() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	chmod 755 "$work"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
	return 0
}

run_pg() { "${as_pg[@]}" env PATH="$bindir:$PATH" "$@"; }

opsdata_system_install() {
	bindir=$("$PG_CONFIG" --bindir)
	pgxs=$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")
}

opsdata_private_install() {
	local pg_bindir pg_sharedir pg_root inst=$work/install
	pg_bindir=$("$PG_CONFIG" --bindir)
	pg_sharedir=$("$PG_CONFIG" --sharedir)
	pg_root=$(dirname "$pg_bindir")
	mkdir -p "$inst$pg_root" "$inst$pg_sharedir"
	cp -a "$pg_root/." "$inst$pg_root/"
	cp -a "$pg_sharedir/." "$inst$pg_sharedir/"
	if ! make -s -C "$top" install DESTDIR="$inst" PG_CONFIG="$PG_CONFIG" >"$work/install.log" 2>&1; then
		cat "$work/install.log"
		return 1
	fi
	# Test modules (libraries the tests preload beside pg_opsdata) go into
	# this installation only, never into the system's.
	for module in "$top"/test/modules/*/Makefile; do
		[ -f "$module" ] || continue
		if ! make -s -C "$(dirname "$module")" install DESTDIR="$inst" PG_CONFIG="$PG_CONFIG" \
			>>"$work/install.log" 2>&1; then
			cat "$work/install.log"
			return 1
		fi
	done
	chmod -R a+rX "$inst"
	bindir=$inst$pg_bindir
	pgxs=$inst$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")
}

opsdata_server_start() {
	local dir=$1 line
	shift
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	run_pg initdb -D "$dir/data" -A trust -N --no-locale -E UTF8 >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log"
		return 1
	}
	{
		echo "shared_preload_libraries = 'pg_opsdata'"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = 5432"
		echo "fsync = off"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	run_pg pg_ctl start -w -D "$dir/data" -l "$dir/server.log" >/dev/null || {
		cat "$dir/server.log"
		return 1
	}
}

opsdata_server_stop() {
	run_pg pg_ctl stop -w -D "$1/data" -m fast >/dev/null
}

opsdata_cleanup() {
	local pidfile
	[ -n "${work:-}" ] && [ -d "$work" ] || return 0
	for pidfile in $(find "$work" -name postmaster.pid 2>/dev/null); do
		run_pg pg_ctl stop -m immediate -D "$(dirname "$pidfile")" >/dev/null 2>&1 ||
			kill -9 "$(head -1 "$pidfile")" 2>/dev/null
	done
	if [ -n "${KEEP:-}" ]; then
		echo "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
