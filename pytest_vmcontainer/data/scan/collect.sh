# The parity scan's collector: read-only, run once per target as root.
# POSIX sh, coreutils and /proc only (plus awk and find, which every Debian has): the
# image may have no Python, ss or ps. Each section starts with a line "@@ NAME";
# pytest_vmcontainer/scan/collect.py parses them. Few processes are started on purpose:
# in a VM under TCG each one costs about 0.1 s, so small files are read with the shell's
# own read, and one head reads many files at once.
#
# Environment: VMC_SCAN_PATHS, more paths to list besides /etc (space-separated);
# VMC_SCAN_PORTS, the ports whose serving processes' environment, limits and working
# directory are read (none: every listening process's); VMC_SCAN_STATIC=1, files only
# (no /proc): a base's root filesystem under chroot.
s() { printf '\n@@ %s\n' "$1"; }
# A small file, with no process started (not for /proc/sys: it cannot be read bytewise).
show() {
    [ -r "$1" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done < "$1"
}

s version; echo 2
# In a container, what docker exec starts with is the container's configured environment
# (ENV lines, run -e): printed before this script changes its own.
if [ -f /.dockerenv ] || [ -f /run/.containerenv ]; then s containerenv; export -p; fi
export LC_ALL=C QUOTING_STYLE=literal
paths="/etc ${VMC_SCAN_PATHS:-}"
max_bytes=1048576   # larger files are listed, not hashed
max_lines=40000     # a bound on what one scan reports

s os; show /etc/os-release
s dpkg
if [ -r /var/lib/dpkg/status ]; then
    awk '/^Package: /{p=$2} /^Version: /{v=$2} /^Status: /{st=$4}
         /^$/{if (p != "" && st == "installed") print p "\t" v; p=""; v=""; st=""}
         END{if (p != "" && st == "installed") print p "\t" v}' /var/lib/dpkg/status
fi
s apk; show /lib/apk/db/installed
s passwd; show /etc/passwd
s group; show /etc/group
s conf; head -v -n 40 /etc/timezone /etc/default/locale /etc/locale.conf /etc/resolv.conf \
    /etc/nsswitch.conf 2>/dev/null
# One walk: stat lines (numeric owners: stat would read /etc/passwd for each file's name)
# and sha256sum lines ("HASH  PATH") of the files small enough to hash.
s files
# shellcheck disable=SC2086 # the paths are split on purpose
find $paths \( -type f -o -type l -o -type d \) -exec stat -c '%F	%a	%u	%g	%s	%N' {} + , \
    -type f -size -"$max_bytes"c -exec sha256sum {} + 2>/dev/null | head -n "$max_lines"

[ "${VMC_SCAN_STATIC:-0}" = 1 ] && exit 0

s self; echo $$
s sysctl
# One head for all: /proc/sys files cannot be read a byte at a time (the shell's read does).
cd /proc/sys 2>/dev/null && head -v -n 1 kernel/osrelease kernel/domainname kernel/msgmax \
    kernel/msgmnb kernel/msgmni kernel/sem kernel/shmall kernel/shmmax kernel/shmmni \
    fs/mqueue/msg_max fs/mqueue/msgsize_max fs/mqueue/queues_max net/core/somaxconn \
    net/ipv4/ip_forward net/ipv4/ip_local_port_range net/ipv4/ip_unprivileged_port_start \
    net/ipv4/ping_group_range net/ipv4/tcp_fin_timeout net/ipv4/tcp_keepalive_time \
    net/ipv4/tcp_syncookies net/ipv4/tcp_tw_reuse net/ipv4/conf/all/forwarding \
    net/ipv6/conf/all/disable_ipv6 net/unix/max_dgram_qlen 2>/dev/null
cd /
for table in tcp tcp6 udp udp6; do
    s "$table"; show "/proc/net/$table"
done
# Listening sockets' inodes (TCP LISTEN, unconnected UDP), then the processes holding them;
# "serving": those on VMC_SCAN_PORTS (every listening one when none are given).
listen=" "; serving=" "
for table in tcp tcp6 udp udp6; do
    case $table in tcp*) want=0A ;; *) want=07 ;; esac
    [ -r "/proc/net/$table" ] || continue
    while read -r _ local _ st _ _ _ _ _ inode _; do
        [ "$st" = "$want" ] || continue
        listen="$listen$inode "
        port=$((0x${local##*:}))
        case " ${VMC_SCAN_PORTS:-$port} " in *" $port "*) serving="$serving$inode " ;; esac
    done < "/proc/net/$table"
done
s sockets
sockets=$(ls -l /proc/[0-9]*/fd 2>/dev/null | while IFS= read -r line; do
    case $line in
        /proc/*/fd:) pid=${line#/proc/}; pid=${pid%%/*} ;;
        *"socket:["*) inode=${line##*socket:[}; inode=${inode%]}
            case $listen in *" $inode "*) printf '%s %s\n' "$pid" "$inode" ;; esac ;;
    esac
done)
printf '%s\n' "$sockets"
servers=" "
# shellcheck disable=SC2086 # pairs "pid inode", split on purpose
set -- $sockets
while [ $# -ge 2 ]; do
    case $serving in *" $2 "*)
        case $servers in *" $1 "*) ;; *) servers="$servers$1 " ;; esac ;;
    esac
    shift 2
done
# Every process's status (its first lines hold Name, PPid and Uid) and arguments.
s procs; head -v -c 1024 /proc/[0-9]*/status /proc/[0-9]*/cmdline 2>/dev/null
environs=""; cwds=""
for pid in $servers; do
    environs="$environs /proc/$pid/environ /proc/$pid/limits"; cwds="$cwds /proc/$pid/cwd"
done
if [ "$servers" != " " ]; then
    # shellcheck disable=SC2086
    { s environ; head -v -c 65536 $environs; s cwd; ls -ld $cwds; } 2>/dev/null
    # A daemon that sets its process title (nginx, postgres) overwrites its environment in
    # /proc; under systemd, what its unit starts it with is read instead.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        s unitpids; units=""
        for pid in $servers; do
            unit=""
            while IFS= read -r line; do
                case $line in *.service) unit=${line##*/} ;; esac
            done < "/proc/$pid/cgroup"
            [ -n "$unit" ] || continue
            printf '%s %s\n' "$pid" "$unit"
            case "$units " in *" $unit "*) ;; *) units="$units $unit" ;; esac
        done
        if [ -n "$units" ]; then
            s manager; systemctl show-environment 2>/dev/null
            # shellcheck disable=SC2086 # one systemctl for every unit
            s units; systemctl show -p Id -p Environment $units 2>/dev/null
        fi
    fi
fi
s end
