#!/usr/bin/env bash
# PostgreSQL 15's server binaries (initdb, pg_ctl, postgres) for the PostgreSQL store's tests,
# from Debian's postgresql-15, if they are missing. The tests start throwaway servers of their
# own (warren_store_postgres::testing), so the install must start no service: a policy-rc.d that
# refuses every start is put in place for its duration (unless the machine already has one).
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
if [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ] && [ -x "$BIN/postgres" ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# Added by warren scripts/install-postgres.sh while it installs.\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15 >&2
