#!/bin/sh
# Several "hosts" on one machine, for multi-host MPI runs without ssh or a second computer (root).
#
#   netns-cluster.sh up STATE LOCAL NAME...   one host per NAME
#   netns-cluster.sh exec STATE NAME CMD...   run CMD (argv kept as given) on host NAME
#   netns-cluster.sh down STATE               stop everything on the hosts, delete them, remove STATE
#
# A host is:
#   - its own network namespace, joined to the others by a bridge (in a separate "switch"
#     namespace) over veth pairs: host number i (from 0) has 10.213.0.(i+1)/24 on eth0, and its
#     own loopback. The hosts reach nothing else: not this machine's network, not each other's
#     loopback;
#   - its own hostname (a fresh UTS namespace per command, named NAME; /etc/hosts lists every host);
#   - its own local disk: STATE/disk/NAME is mounted at the path LOCAL (an existing empty folder)
#     in a private mount namespace, so every host sees a different folder at the same path, and
#     this machine sees host NAME's disk at STATE/disk/NAME.
# Everything else (the rest of the file system, /dev/shm, processes) is shared, which keeps the
# binaries and data sets visible; what a real cluster would not share goes under LOCAL.
#
# scripts/netns-agent.sh is OpenMPI's launch agent for these hosts (--mca plm_rsh_agent).
set -eu

subnet=10.213.0

die() { echo "netns-cluster: $*" >&2; exit 1; }

up() {
    state=$1 mountpoint=$2; shift 2
    [ "$#" -ge 1 ] || die "up: name at least one host"
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
    for tool in ip unshare hostname mount; do command -v "$tool" >/dev/null || die "$tool not found"; done
    [ -d "$mountpoint" ] || die "up: $mountpoint is not a folder"
    mkdir -p "$state/hosts" "$state/disk"
    # A prefix unique to this cluster: namespace names are global on the machine.
    prefix="dtr$$$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')"
    echo "$mountpoint" > "$state/mountpoint"
    echo "127.0.0.1 localhost" > "$state/etc-hosts"
    ip netns add "$prefix-sw" || die "cannot create a network namespace (ip netns add)"
    echo "$prefix-sw" > "$state/namespaces"
    ip -n "$prefix-sw" link add br0 type bridge || die "cannot create a bridge"
    ip -n "$prefix-sw" link set br0 up
    i=0
    for name in "$@"; do
        ns="$prefix-$i" addr="$subnet.$((i + 1))"
        ip netns add "$ns"
        echo "$ns" >> "$state/namespaces"
        ip -n "$prefix-sw" link add "p$i" type veth peer name eth0 netns "$ns"
        ip -n "$prefix-sw" link set "p$i" master br0 up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        echo "$ns $addr" > "$state/hosts/$name"
        echo "$addr $name" >> "$state/etc-hosts"
        mkdir -p "$state/disk/$name"
        i=$((i + 1))
    done
}

# Enters host NAME's namespaces; `inside` finishes the set-up in the new mount and UTS namespaces.
run_on() {
    state=$1 name=$2; shift 2
    [ -f "$state/hosts/$name" ] || die "no host '$name' in $state"
    read -r ns _ < "$state/hosts/$name"
    exec ip netns exec "$ns" unshare --uts --mount --propagation private -- "$0" inside "$state" "$name" "$@"
}

inside() {
    state=$1 name=$2; shift 2
    hostname "$name"
    mount --bind "$state/disk/$name" "$(cat "$state/mountpoint")"
    mount --bind "$state/etc-hosts" /etc/hosts
    exec "$@"
}

down() {
    state=$1
    [ -f "$state/namespaces" ] || { rm -rf "$state"; return 0; }
    while read -r ns; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    done < "$state/namespaces"
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done < "$state/namespaces"
    rm -rf "$state"
}

[ "$#" -ge 1 ] || die "usage: netns-cluster.sh up|exec|down STATE …"
cmd=$1; shift
case $cmd in
    up) [ "$#" -ge 3 ] || die "usage: netns-cluster.sh up STATE LOCAL NAME..."; up "$@" ;;
    exec) [ "$#" -ge 3 ] || die "usage: netns-cluster.sh exec STATE NAME CMD..."; run_on "$@" ;;
    inside) inside "$@" ;;
    down) [ "$#" -eq 1 ] || die "usage: netns-cluster.sh down STATE"; down "$1" ;;
    *) die "unknown command '$cmd' (up, exec, down)" ;;
esac
