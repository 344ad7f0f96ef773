#!/bin/sh
# Written by kmod-harness (harness/kernel/cuts.py, udev_shim): a base root for tree kernels.
case "$1" in
trigger) exit 0 ;;
settle)
    mkdir -p /dev/virtio-ports
    for f in /sys/class/virtio-ports/*/name; do
        [ -r "$f" ] || continue
        name=$(cat "$f")
        port=${f%/name}
        [ -n "$name" ] && ln -sfn "../${port##*/}" "/dev/virtio-ports/$name"
    done
    exit 0 ;;
esac
exec /usr/lib/kmod-harness/udevadm "$@"
