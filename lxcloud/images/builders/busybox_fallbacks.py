"""Small shell stand-ins for common tools that Debian's busybox-static (1.35) has no applet for.

Scripts people bring expect them (`nohup ./server &`, `pgrep -f`, `install -m 755 …`, `nice -n`).
Each is a POSIX sh script over busybox applets, installed in /usr/bin only when the host's
busybox lacks the applet (a busybox that has one keeps its own). They cover the options scripts
use, with the exit codes of the GNU/procps/util-linux tools they stand in for.
"""

from __future__ import annotations

NOHUP = """\
#!/bin/sh
# nohup CMD [ARG]...: CMD ignoring hangups; output to nohup.out when it would go to a terminal
if [ $# -eq 0 ] || [ "$1" = --help ]; then
  echo "usage: nohup COMMAND [ARG]..." >&2; exit 125
fi
[ "$1" = -- ] && shift
if [ -t 0 ]; then exec </dev/null; fi
if [ -t 1 ]; then
  out=nohup.out
  { : >>"$out"; } 2>/dev/null || out="${HOME:-/root}/nohup.out"
  echo "nohup: ignoring input and appending output to '$out'" >&2
  exec >>"$out" || exit 125
fi
if [ -t 2 ]; then exec 2>&1; fi
trap '' HUP
exec "$@"
"""

NICE = """\
#!/bin/sh
# nice [-n N | -N] [CMD [ARG]...]: CMD at a niceness N higher (10); alone: print the niceness
n=10
case "$1" in
  -n) n=$2; shift 2 ;;
  -n*) n=${1#-n}; shift ;;
  --adjustment=*) n=${1#*=}; shift ;;
  -[0-9]*|--[0-9]*) n=${1#-}; shift ;;
esac
[ "$1" = -- ] && shift
if [ $# -eq 0 ]; then
  read -r stat </proc/$$/stat
  set -- ${stat##*) }
  echo "${17}"
  exit 0
fi
renice -n "$n" -p $$ >/dev/null || echo "nice: cannot set niceness" >&2
exec "$@"
"""

MOUNTPOINT = """\
#!/bin/sh
# mountpoint [-q] DIR: exit 0 if DIR is a mount point, 32 if not, 1 if it cannot be looked at
q=
[ "$1" = -q ] && { q=1; shift; }
d=$1
if [ -z "$d" ]; then echo "usage: mountpoint [-q] DIR" >&2; exit 1; fi
if ! p=$(realpath "$d" 2>/dev/null) || [ ! -e "$p" ]; then
  [ -n "$q" ] || echo "mountpoint: $d: No such file or directory" >&2
  exit 1
fi
# field 5 of mountinfo is the mount point, with spaces and such escaped as octal
if P=$p awk '{ m = $5; gsub(/\\\\040/, " ", m); gsub(/\\\\011/, "\\t", m)
                if (m == ENVIRON["P"]) f = 1 }
            END { exit !f }' /proc/self/mountinfo; then
  [ -n "$q" ] || echo "$d is a mountpoint"
  exit 0
fi
[ -n "$q" ] || echo "$d is not a mountpoint"
exit 32
"""

# pgrep and pkill are one script: its name says which
PGREP = """\
#!/bin/sh
# pgrep [-flx] PATTERN | pkill [-fx] [-SIGNAL | -s SIGNAL] PATTERN
# PATTERN is an extended regex matched against the process name (-f: the whole command line,
# -x: exactly); exit 0 when something matched, 1 when nothing did, 2 on bad usage
me=${0##*/}
full= exact= list= sig=TERM
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -s) [ "$me" = pkill ] || break; sig=$2; shift ;;
    -[flx]*)
      o=${1#-}
      while [ -n "$o" ]; do
        case "$o" in f*) full=1 ;; l*) list=1 ;; x*) exact=1 ;; esac
        o=${o#?}
      done ;;
    -[0-9]*|-[A-Z]*) [ "$me" = pkill ] || break; sig=${1#-} ;;
    -*) echo "usage: $me [-flx] PATTERN" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || { echo "usage: $me [-flx] PATTERN" >&2; exit 2; }
pat=$1
[ -n "$exact" ] && pat="^($pat)\\$"
# listed by this shell itself, before any subshell of ours exists (one would match PATTERN too)
procs=
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  read -r name <"$d/comm" 2>/dev/null || continue
  cmd=$name
  if [ -n "$full" ]; then
    cmd=$(tr '\\0\\n' '  ' <"$d/cmdline" 2>/dev/null)
    cmd=${cmd% }
    [ -n "$cmd" ] || cmd=$name
  fi
  procs="$procs$pid $cmd
"
done
pids=$(printf '%s' "$procs" | PAT=$pat awk '{
  pid = $1; cmd = substr($0, length(pid) + 2)
  if (cmd ~ ENVIRON["PAT"]) print pid, cmd
}')
[ -n "$pids" ] || exit 1
if [ "$me" = pkill ]; then
  rc=1
  for pid in $(echo "$pids" | cut -d' ' -f1); do
    kill -s "$sig" "$pid" 2>/dev/null && rc=0
  done
  exit $rc
fi
if [ -n "$list" ]; then echo "$pids"; else echo "$pids" | cut -d' ' -f1; fi
"""

INSTALL = """\
#!/bin/sh
# install [-Dv] [-m MODE] [-o OWNER] [-g GROUP] SRC... DEST | install -d [-m MODE] DIR...
dirs= lead= mode=755 owner= group= verbose=
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--directory) dirs=1 ;;
    -D) lead=1 ;;
    -v|--verbose) verbose=1 ;;
    -c|-s|--strip|-p|--preserve-timestamps) ;;
    -m) mode=$2; shift ;;
    -m*) mode=${1#-m} ;;
    --mode=*) mode=${1#*=} ;;
    -o) owner=$2; shift ;;
    --owner=*) owner=${1#*=} ;;
    -g) group=$2; shift ;;
    --group=*) group=${1#*=} ;;
    --) shift; break ;;
    -*) echo "install: unknown option $1" >&2; exit 1 ;;
    *) break ;;
  esac
  shift
done
set_attrs() {
  chmod "$mode" "$1" || exit 1
  if [ -n "$owner" ]; then chown "$owner" "$1" || exit 1; fi
  if [ -n "$group" ]; then chgrp "$group" "$1" || exit 1; fi
  [ -z "$verbose" ] || echo "'$1'"
}
if [ -n "$dirs" ]; then
  [ $# -gt 0 ] || { echo "install: missing operand" >&2; exit 1; }
  for d; do mkdir -p "$d" && set_attrs "$d" || exit 1; done
  exit 0
fi
[ $# -ge 2 ] || { echo "install: missing destination operand" >&2; exit 1; }
eval "dest=\\${$#}"
if [ $# -gt 2 ] && [ ! -d "$dest" ]; then
  echo "install: target '$dest' is not a directory" >&2; exit 1
fi
if [ -n "$lead" ]; then
  if [ $# -gt 2 ]; then mkdir -p "$dest"; else mkdir -p "$(dirname "$dest")"; fi || exit 1
fi
n=$#
while [ $n -gt 1 ]; do
  src=$1; shift; n=$((n - 1))
  t=$dest
  [ -d "$t" ] && t="$dest/${src##*/}"
  rm -f "$t" 2>/dev/null
  cp "$src" "$t" && set_attrs "$t" || exit 1
done
"""

FALLBACKS: dict[str, str] = {
    "nohup": NOHUP,
    "nice": NICE,
    "mountpoint": MOUNTPOINT,
    "pgrep": PGREP,
    "pkill": PGREP,
    "install": INSTALL,
}
