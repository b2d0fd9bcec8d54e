#!/usr/bin/env bash
# Build (once) the Debian sid root that the sandbox Asterisk runs in.
#
#   asterisk/provision.sh              build the root if it is missing; print its path LAST on stdout
#   asterisk/provision.sh --print-root print the path the root has (or would have) and exit
#   asterisk/provision.sh --check      exit 0 (and print the path) only if a valid root exists
#
# Why a chroot: Debian 12 has no asterisk package, sid has Asterisk 22. debootstrap gives a
# reproducible root from Debian's own packages, with nothing installed on the host but debootstrap.
#
# The root lives OUTSIDE the work tree, in ${HOTLINE_SANDBOX_CACHE:-/var/cache/hotline-bridge}, named
# asterisk-root-<hash>; <hash> covers this script and provision.packages, so changing either one
# builds a fresh root and an unchanged checkout reuses the old one (exits in milliseconds).
# The root is built in a temporary directory and renamed into place only after it was checked,
# with a marker file inside: a half-built root is never mistaken for a good one.
#
# Environment:
#   HOTLINE_SANDBOX_CACHE   cache directory (default /var/cache/hotline-bridge)
#   HOTLINE_SANDBOX_MIRROR  Debian mirror (default: the host's own apt sources, else deb.debian.org)
#   HOTLINE_SANDBOX_KEEP_OLD_ROOTS=1  do not delete roots of older hashes after a successful build
#
# Everything informational goes to stderr; stdout carries only the root path (last line), so
# callers can do ROOT=$(asterisk/provision.sh | tail -n1).
set -euo pipefail

START_NS=$(date +%s%N)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
PKG_FILE="$HERE/provision.packages"
CACHE="${HOTLINE_SANDBOX_CACHE:-/var/cache/hotline-bridge}"
SUITE=sid
# PJSIP_INHERITABLE_HEADER (which the bridge may use) appeared in 22.9.
MIN_MAJOR=22
MIN_MINOR=9
MARKER_NAME=.hotline-sandbox-root

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { local ms=$(( ($(date +%s%N) - START_NS) / 1000000 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

[[ -r $PKG_FILE ]] || die "package list $PKG_FILE is missing"
HASH=$(cat "$SELF" "$PKG_FILE" | sha256sum | cut -c1-12)
ROOT="$CACHE/asterisk-root-$HASH"
MARKER="$ROOT/$MARKER_NAME"

root_is_valid() { [[ -f $MARKER && -x $ROOT/usr/sbin/asterisk ]]; }

# True if anything (e.g. the sandbox's /proc) is mounted at or below directory $1.
has_mounts() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

case "${1:-}" in
    --print-root) echo "$ROOT"; exit 0 ;;
    --check) if root_is_valid; then echo "$ROOT"; exit 0; else exit 1; fi ;;
    -h|--help) sed -n '2,26p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac

if root_is_valid; then
    log "root already provisioned: $ROOT ($(sed -n 's/^asterisk_version=//p' "$MARKER")); nothing to do ($(elapsed))"
    echo "$ROOT"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root (debootstrap and chroot need it): sudo $SELF"

mkdir -p "$CACHE"
exec 9>"$CACHE/.provision.lock"
if ! flock -n 9; then
    log "another provision.sh is running; waiting for $CACHE/.provision.lock ..."
    flock -w 1800 9 || die "another provision.sh held $CACHE/.provision.lock for 30 min"
fi
# Someone else may have built it while we waited.
if root_is_valid; then
    log "root was provisioned by a concurrent run: $ROOT ($(elapsed))"
    echo "$ROOT"
    exit 0
fi

# --- debootstrap ------------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q debootstrap >&2; then
        apt-get update -q >&2 || die "apt-get update failed: the Debian package registry is unreachable?"
        apt-get install -y -q debootstrap >&2 || die "could not install debootstrap with apt-get"
    fi
fi

# --- mirror: the one the host's own apt sources use ---------------------------------------------
detect_mirror() {
    local uri="" f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" \
              | grep -E '^https?://' | grep -v -- '-security' | head -n1 || true)
        [[ -n $uri ]] && break
    done
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' \
              /etc/apt/sources.list | grep -v -- '-security' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${HOTLINE_SANDBOX_MIRROR:-$(detect_mirror)}"
MIRROR="${MIRROR%/}"
log "mirror $MIRROR, suite $SUITE"
if ! wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/Release"; then
    die "Debian mirror unreachable: cannot fetch $MIRROR/dists/$SUITE/Release (set HOTLINE_SANDBOX_MIRROR to a reachable Debian mirror that carries $SUITE)"
fi

# --- build into a temporary directory, then rename ----------------------------------------------
# Leftovers of interrupted runs (we hold the lock, so no other build is live).
for stale in "$CACHE"/.asterisk-root-*.tmp.*; do
    [[ -d $stale ]] || continue
    if has_mounts "$stale"; then log "leaving $stale alone: something is mounted in it"; continue; fi
    log "removing leftover $stale"
    rm -rf --one-file-system "$stale"
done

TMP=$(mktemp -d "$CACHE/.asterisk-root-$HASH.tmp.XXXXXX")
BUILD_LOG="$CACHE/provision-$HASH.log"
cleanup() {
    local rc=$?
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        # debootstrap mounts proc/sys/dev inside the target while it works; undo that on failure.
        awk -v d="$TMP" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r \
            | while read -r m; do umount -l "$m" || true; done
        if has_mounts "$TMP"; then
            log "could not unmount everything below $TMP; leaving it for inspection"
        else
            rm -rf --one-file-system "$TMP"
        fi
    fi
    if [[ $rc -ne 0 ]]; then log "failed after $(elapsed)"; fi
}
trap cleanup EXIT

PACKAGES=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PKG_FILE" | grep -v '^$' | paste -sd, -)
log "debootstrap --variant=minbase --include=$PACKAGES $SUITE (log: $BUILD_LOG); this takes about a minute"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" >"$BUILD_LOG" 2>&1; then
    tail -n 25 "$BUILD_LOG" >&2 || true
    die "debootstrap failed (full log: $BUILD_LOG)"
fi
chmod 755 "$TMP"

VERSION_LINE=$(chroot "$TMP" /usr/sbin/asterisk -V 2>&1 | head -n1 || true)
if [[ ! $VERSION_LINE =~ ^Asterisk\ ([0-9]+)\.([0-9]+) ]]; then
    die "cannot read the Asterisk version in the new root (asterisk -V said: '$VERSION_LINE')"
fi
MAJOR=${BASH_REMATCH[1]}
MINOR=${BASH_REMATCH[2]}
if (( MAJOR < MIN_MAJOR || (MAJOR == MIN_MAJOR && MINOR < MIN_MINOR) )); then
    die "Debian $SUITE now ships '$VERSION_LINE'; hotline-bridge needs Asterisk >= $MIN_MAJOR.$MIN_MINOR"
fi
log "$VERSION_LINE"

# The .deb files are only needed to install; ~100 MB.
chroot "$TMP" apt-get clean >/dev/null 2>&1 || true

# debootstrap copied the host's resolv.conf. The sandbox uses IP literals only, and any lookup
# must stay on loopback, never reach the host's (possibly non-local) resolver.
# (Asterisk's res_pjsip still opens its DNS client sockets, on the wildcard address: see
# asterisk/README.md.)
rm -f "$TMP/etc/resolv.conf"
printf '# hotline-bridge sandbox: IP literals only; lookups stay on loopback\nnameserver 127.0.0.1\n' \
    >"$TMP/etc/resolv.conf"

cat >"$TMP/$MARKER_NAME" <<EOF
# written by hotline-bridge asterisk/provision.sh after a successful build
hash=$HASH
asterisk_version=$VERSION_LINE
suite=$SUITE
mirror=$MIRROR
packages=$PACKAGES
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

if [[ -e $ROOT ]]; then
    # A directory without a valid marker (root_is_valid failed above): never trust it.
    has_mounts "$ROOT" && die "$ROOT exists without a valid marker and has mounts; unmount and remove it by hand"
    log "replacing invalid $ROOT"
    rm -rf --one-file-system "$ROOT"
fi
mv -T "$TMP" "$ROOT"
TMP=""

if [[ ${HOTLINE_SANDBOX_KEEP_OLD_ROOTS:-0} != 1 ]]; then
    for old in "$CACHE"/asterisk-root-*; do
        [[ -d $old && $old != "$ROOT" ]] || continue
        if has_mounts "$old"; then log "keeping older root $old: it is in use (mounted)"; continue; fi
        log "removing older root $old"
        rm -rf --one-file-system "$old"
    done
fi

log "root ready in $(elapsed): $ROOT"
echo "$ROOT"
