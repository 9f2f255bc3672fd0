#!/bin/busybox sh
# PID 1 of the rig's initramfs: a stand-in for Talos's config fetch.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "rig-init: start"
insmod /lib/e1000.ko
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 20 -T 1 -s /bin/udhcpc.script >/dev/null 2>&1 || echo "rig-init: dhcp failed"
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
url=""; wipe=""; report=""; wipe_report=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    talos.config=*) url="${arg#talos.config=}" ;;
    talos.experimental.wipe=*) wipe="${arg#talos.experimental.wipe=}" ;;
    rig.report=*) report="${arg#rig.report=}" ;;
    talprov.wipe_report=*) wipe_report="${arg#talprov.wipe_report=}" ;;
  esac
done
if [ -n "$url" ]; then
  if wget -q -O /tmp/config "$url"; then
    echo "rig-init: config fetched ($(wc -c < /tmp/config) bytes)"
    wget -q -O /dev/null "$report/report/$uuid?event=config-applied"
  else
    echo "rig-init: config fetch failed"
    wget -q -O /dev/null "$report/report/$uuid?event=config-failed"
  fi
fi
if [ -n "$wipe" ]; then
  echo "rig-init: wiping $wipe"
  wget -q -O /dev/null "$wipe_report"
  # Like Talos after a wipe, keep running: the BMC powers the machine off.
  echo "rig-init: wiped, waiting for power-off"
  sleep 600
fi
echo "rig-init: power off"
poweroff -f
