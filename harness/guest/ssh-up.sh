#!/bin/sh
# Guest side of --transport ssh and live sessions: virtme-ng's exec channel runs
# this while the host works over SSH. virtme-ng-init brings eth0 up with DHCP
# and starts sshd only if virtio_net is bound when it looks, which under
# emulation it sometimes is not: then nothing listens and the host waits in
# vain. Make sure of both, say what was done in the kernel log, and stay up.
log() { echo "<6>kmod-harness: $*" > /dev/kmsg; }

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! ip -4 addr show dev eth0 2>/dev/null | grep -q 'inet '; then
    # QEMU's user network always gives the guest 10.0.2.15; its DHCP would too.
    ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && log "eth0 configured statically"
fi
if ! pgrep -x sshd > /dev/null; then
    /run/virtme/guesttools/virtme-sshd-script && log "sshd started"
fi
exec sleep 86400
