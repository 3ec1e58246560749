#!/bin/sh
# Nightly Postgres backup that reports each step to heartwatch: dump, upload, verify.
#
# Under `heartwatch run` (recommended), which sends start, finish or the exit status, and the output
# tail, and hands this script HEARTWATCH_PING_URL and HEARTWATCH_RUN_ID for its steps:
#     heartwatch run nightly-backup -- /usr/local/bin/backup.sh
# On its own, with nothing but curl: set HEARTWATCH_PING_URL to the check's ping URL
# (http://host:8000/ping/<uuid> or .../ping/<ping_key>/<slug>); it then sends start and finish itself.
# Without HEARTWATCH_PING_URL it just runs, unmonitored.
#
# Settings (environment):
#   BACKUP_DB      database to dump                          (default: app)
#   BACKUP_DEST    folder or rsync target to upload to       (default: /srv/backups)
#   BACKUP_DEMO=1  no Postgres needed: "dump" tars a small folder of sample data, "upload" copies it,
#                  "verify" lists the archive; BACKUP_DEMO_PAUSE seconds between steps (default 1),
#                  so the steps show on the status page's timeline.
set -eu

DB=${BACKUP_DB:-app}
DEMO=${BACKUP_DEMO:-0}
PAUSE=${BACKUP_DEMO_PAUSE:-1}
WORK=$(mktemp -d)
STAMP=$(date +%Y%m%d-%H%M%S)
if [ "$DEMO" = 1 ]; then
    DEST=${BACKUP_DEST:-$WORK/remote}
    FILE=$WORK/$DB-$STAMP.tar.gz
else
    DEST=${BACKUP_DEST:-/srv/backups}
    FILE=$WORK/$DB-$STAMP.dump
fi

# One id for all pings of this run, so overlapping runs stay apart on the server.
STANDALONE=0
if [ -n "${HEARTWATCH_PING_URL:-}" ] && [ -z "${HEARTWATCH_RUN_ID:-}" ]; then
    STANDALONE=1
    HEARTWATCH_RUN_ID=backup-$$-$(date +%s)
fi
RID=${HEARTWATCH_RUN_ID:-}

ping() {  # ping SUFFIX QUERY: never lets monitoring fail or hold up the backup for long
    [ -n "${HEARTWATCH_PING_URL:-}" ] || return 0
    curl -fsS -m 10 --retry 2 -o /dev/null "$HEARTWATCH_PING_URL$1?rid=$RID$2" \
        || echo "backup.sh: warning: could not ping heartwatch ($1$2)" >&2
}

step() {  # step NAME: `heartwatch step` where installed, else the same request with curl
    echo "== $1"
    [ -n "${HEARTWATCH_PING_URL:-}" ] || return 0
    if command -v heartwatch >/dev/null 2>&1 && [ "$STANDALONE" = 0 ]; then
        heartwatch step "$1"
    else
        ping "" "&step=$1"
    fi
}

finish() {
    status=$?
    rm -rf "$WORK"
    # Under `heartwatch run` the exit status is sent for us; on our own, send it (0 = ok).
    [ "$STANDALONE" = 0 ] || ping "/$status" ""
    exit "$status"
}
trap finish EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
[ "$STANDALONE" = 0 ] || ping "/start" ""

step dump
if [ "$DEMO" = 1 ]; then
    mkdir -p "$WORK/data"
    printf 'id,name\n1,alice\n2,bob\n' > "$WORK/data/users.csv"
    date > "$WORK/data/dumped-at.txt"
    tar -czf "$FILE" -C "$WORK" data
    sleep "$PAUSE"
else
    pg_dump --format=custom --file="$FILE" "$DB"
fi
echo "dumped $DB to $FILE ($(wc -c < "$FILE") bytes)"

step upload
if [ "$DEMO" = 1 ]; then
    mkdir -p "$DEST"
    cp "$FILE" "$DEST/"
    sleep "$PAUSE"
else
    rsync --archive --partial "$FILE" "$DEST/"
fi
echo "uploaded to $DEST"

step verify
if [ "$DEMO" = 1 ]; then
    tar -tzf "$DEST/$(basename "$FILE")" | grep -q 'data/users.csv'
else
    # A dump pg_restore can list is a dump pg_restore can restore.
    pg_restore --list "$FILE" > /dev/null
fi
echo "verified $(basename "$FILE")"
