#!/bin/sh
# OpenMPI's launch agent for the hosts of scripts/netns-cluster.sh, in place of ssh:
#
#   DISTRAINER_NETNS_STATE=STATE mpirun --mca plm_rsh_agent scripts/netns-agent.sh --hostfile H …
#
# mpirun calls it as `netns-agent.sh HOST WORD...`, as it would call `ssh HOST WORD...`; the words
# form one shell command line (the remote orted with its environment), run on HOST.
set -eu
state=${DISTRAINER_NETNS_STATE:?netns-agent: set DISTRAINER_NETNS_STATE to the netns-cluster.sh state folder}
[ "$#" -ge 2 ] || { echo "netns-agent: usage: netns-agent.sh HOST COMMAND..." >&2; exit 255; }
host=$1; shift
exec "$(dirname "$0")/netns-cluster.sh" exec "$state" "$host" sh -c "$*"
