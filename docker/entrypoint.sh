#!/bin/sh
# Container entry point (docker/Dockerfile).
#
#   entrypoint.sh worker                 run sshd in the foreground: mpirun on the head starts ranks here
#   entrypoint.sh head DISTRAINER-ARGS   start sshd, wait for every host of the hostfile to accept
#                                        ssh, then mpirun distrainer over them
#   entrypoint.sh COMMAND...             run COMMAND (e.g. `distrainer models`)
#
# The containers share one key pair through the folder $DISTRAINER_SSH (a volume): the first
# container to start creates it, every container authorises it. Environment for `head`:
#   DISTRAINER_HOSTFILE  the hostfile (default /etc/distrainer/hostfile)
#   DISTRAINER_RANKS     ranks to start (default: the sum of the hostfile's slots)
#   DISTRAINER_MPI_ARGS  extra mpirun arguments (e.g. "--map-by node")
#   DISTRAINER_WAIT      seconds to wait for the workers' sshd (default 120)
set -eu
keys=${DISTRAINER_SSH:-/etc/distrainer/ssh}
hostfile=${DISTRAINER_HOSTFILE:-/etc/distrainer/hostfile}

setup_ssh() {
    mkdir -p "$keys" /root/.ssh /run/sshd
    # mkdir is atomic: only one container generates the key.
    if mkdir "$keys/.lock" 2>/dev/null; then
        [ -f "$keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$keys/id_ed25519"
    fi
    i=0
    while [ ! -f "$keys/id_ed25519.pub" ]; do
        i=$((i + 1)); [ "$i" -le 60 ] || { echo "entrypoint: no key in $keys after 60 s" >&2; exit 1; }
        sleep 1
    done
    sleep 1   # the key file is written before its .pub
    cp "$keys/id_ed25519" /root/.ssh/id_ed25519
    chmod 600 /root/.ssh/id_ed25519
    cp "$keys/id_ed25519.pub" /root/.ssh/authorized_keys
    printf 'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' > /root/.ssh/config
    [ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null
}

case ${1:-worker} in
    worker)
        setup_ssh
        exec /usr/sbin/sshd -D -e
        ;;
    head)
        shift
        setup_ssh
        /usr/sbin/sshd -e
        [ -f "$hostfile" ] || { echo "entrypoint: no hostfile at $hostfile" >&2; exit 1; }
        hosts=$(sed -e 's/#.*//' "$hostfile" | awk 'NF { print $1 }')
        slots=$(sed -e 's/#.*//' "$hostfile" | awk 'NF { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { sub(/^slots=/, "", $i); n = $i } s += n } END { print s + 0 }')
        deadline=$(( $(date +%s) + ${DISTRAINER_WAIT:-120} ))
        for h in $hosts; do
            until ssh -o BatchMode=yes -o ConnectTimeout=3 "$h" true 2>/dev/null; do
                [ "$(date +%s)" -lt "$deadline" ] || { echo "entrypoint: $h does not accept ssh" >&2; exit 1; }
                sleep 1
            done
        done
        # shellcheck disable=SC2086  # DISTRAINER_MPI_ARGS is a list of words
        exec mpirun --hostfile "$hostfile" -n "${DISTRAINER_RANKS:-$slots}" --bind-to core \
            -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS ${DISTRAINER_MPI_ARGS:-} /usr/local/bin/distrainer "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
