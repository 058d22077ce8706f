#!/bin/bash
# PID 1 of one emulated instance, started by runtime.py as
#   unshare --mount --uts --pid --fork --mount-proc --kill-child /bin/bash instance_init.sh
# It builds the instance's private view of the filesystem, then runs sshd and the onstart script.
# When it dies (SIGKILL from the emulator on stop/destroy), the kernel kills every process of the
# instance and its mounts vanish with the namespace.
set -eu
d="$VE_INSTANCE_DIR"
# Log descriptors are opened before /tmp is covered: the state dir may live under the host's /tmp.
exec 3>>"$d/logs/sshd.log" 4>>"$d/logs/onstart.log"
echo "C.${CONTAINER_ID}" > /proc/sys/kernel/hostname

mount -t overlay overlay -o "lowerdir=$VE_BASE_VENV,upperdir=$d/venv/upper,workdir=$d/venv/work" /venv/main
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc/upper,workdir=$d/etc/work" /etc
if [ -f "$d/disk.img" ]; then
  # The instance's disk, of the rented size (disk.py). The previous start's loop device is released when
  # its namespace dies; a second loop device on the same image while the first is mounted would corrupt it.
  for _ in $(seq 100); do [ -z "$(losetup -j "$d/disk.img")" ] && break; sleep 0.05; done
  if [ -n "$(losetup -j "$d/disk.img")" ]; then
    echo "instance_init: $d/disk.img is still attached to a loop device; not mounting it twice" >&2
    exit 1
  fi
  # noinit_itable: no background zeroing of inode tables (the sparse image reads as zeros already).
  mount -t ext4 -o loop,noatime,noinit_itable "$d/disk.img" /workspace
  rmdir /workspace/lost+found 2>/dev/null || true  # mkfs's, not the image's: Vast's /workspace has none
else
  mount --bind "$d/disk" /workspace  # an instance from before disks had a size
fi
if [ -n "${VE_UV_CACHE:-}" ]; then
  # The emulator's analogue of a host's image-layer cache: repeated package installs stay fast.
  mount --bind "$VE_UV_CACHE" "$d/home/.cache/uv"
fi
mount --rbind "$d/home" /root
mount --bind "$d/tmp" /tmp
if [ -d "$VE_STATE_DIR" ]; then
  # The emulator's own files (other instances' keys and disks) are none of this instance's business.
  mount -t tmpfs -o size=64k,mode=700 tmpfs "$VE_STATE_DIR"
fi

ssh_delay="${VE_SSH_DELAY:-0}"
unset VE_INSTANCE_DIR VE_STATE_DIR VE_BASE_VENV VE_UV_CACHE VE_SSH_DELAY
cd /root

(
  if [ "$ssh_delay" != "0" ]; then sleep "$ssh_delay"; fi
  exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
) </dev/null >&3 2>&3 &

if [ -s /root/onstart.sh ]; then
  (
    echo "--- onstart $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    exec /bin/bash /root/onstart.sh
  ) </dev/null >&4 2>&4 &
fi
exec 3>&- 4>&-

# Stay alive as the namespace's init and reap orphans.
while :; do
  sleep 3600 &
  wait $! || true
done
