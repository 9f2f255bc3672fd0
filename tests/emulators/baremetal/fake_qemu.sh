#!/bin/sh
# Stands in for qemu-system-x86_64 in power-only tests: "boots" a sleeping
# process, writes its pid like -daemonize -pidfile, and returns at once.
pidfile=""
while [ $# -gt 0 ]; do
  [ "$1" = "-pidfile" ] && pidfile="$2"
  shift
done
sleep 600 </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
