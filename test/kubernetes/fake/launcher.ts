// How the fake kubelet starts a container's command for real: `unshare --mount --pid --fork`
// (and `--net` when a default-deny NetworkPolicy selects the pod: loopback only) runs a root shell
// as PID 1 of a new PID namespace, as a pod's container has its own (shareProcessNamespace false),
// that builds the container's root: a tmpfs holding read-only bind mounts of the host's top-level
// directories, a /proc of that PID namespace, a minimal /dev, and the pod's volumes at their mount
// paths; then it chroots there and `setpriv` drops to the pod's uid/gid/groups with no capabilities
// before exec'ing the command, which so stays PID 1 (`kill -1` inside reaches only the pod, and
// every process of the pod dies with it). The spawned unshare is a session leader (setsid) and the
// container's processes stay in its process group, so the kubelet stops them by that group; the
// host PID of the container's main process comes with the start signal on fd 3 (`started <pid>`),
// for a stop that signals the main process alone.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

const UNSHARE = ['/usr/bin/unshare', '/bin/unshare', '/usr/sbin/unshare'].find((p) => existsSync(p)) ?? 'unshare';

export interface MountSpec {
  /** 'bind' mounts a host directory; 'tmpfs' mounts a fresh tmpfs with these options. */
  type: 'bind' | 'tmpfs';
  source: string;
  target: string;
  readOnly: boolean;
}

export interface LaunchSpec {
  rootDir: string;
  isolateNetwork: boolean;
  workingDir: string;
  uid: number;
  gid: number;
  groups: number[];
  dropAllCapabilities: boolean;
  noNewPrivileges: boolean;
  mounts: MountSpec[];
  argv: string[];
  env: Record<string, string>;
  stdin: boolean;
}

const SCRIPT = String.raw`set -eu
CPATH=${'$'}{PATH-}; PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$1; NET=$2; WD=$3; U=$4; G=$5; GR=$6; CAPS=$7; NNP=$8; N=$9; shift 9
mount -t tmpfs -o mode=0755 fakekube-root "$R"
for e in /*; do
  b=${'$'}{e#/}
  case "$b" in tmp|dev|proc|sys|run|lost+found) continue ;; esac
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$R/$b"
  elif [ -d "$e" ]; then mkdir "$R/$b"; mount --bind "$e" "$R/$b"; mount -o remount,bind,ro "$R/$b"
  fi
done
mkdir "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run"
read -r HP _ </proc/self/stat
mount -t proc -o nosuid,nodev,noexec fakekube-proc "$R/proc"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=0755,nosuid fakekube-dev "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir "$R/dev/shm"; mount -t tmpfs -o mode=1777,nosuid,nodev fakekube-shm "$R/dev/shm"
i=0
while [ "$i" -lt "$N" ]; do
  T=$1; S=$2; D=$3; O=$4; shift 4
  mkdir -p "$R$D"
  if [ "$T" = tmpfs ]; then mount -t tmpfs -o "$S" fakekube-volume "$R$D"; else mount --bind "$S" "$R$D"; fi
  if [ "$O" = ro ]; then mount -o remount,bind,ro "$R$D"; fi
  i=$((i + 1))
done
mkdir -p "$R$WD"
mount -o remount,ro fakekube-root "$R"
if [ "$NET" = 1 ]; then ip link set lo up 2>/dev/null || true; fi
set -- --reuid "$U" --regid "$G" "$@"
if [ -n "$GR" ]; then set -- --groups "$GR" "$@"; else set -- --clear-groups "$@"; fi
if [ "$CAPS" = 1 ]; then set -- --bounding-set=-all --inh-caps=-all "$@"; fi
if [ "$NNP" = 1 ]; then set -- --no-new-privs "$@"; fi
S=$(command -v setpriv)
PATH=$CPATH
printf 'started %s' "$HP" >&3
exec 3>&- /usr/sbin/chroot "$R" "$S" "$@"
`;

/** Starts the container's process (stdio: stdin pipe or /dev/null, stdout and stderr pipes, fd 3 the start signal). */
export function launch(spec: LaunchSpec): ChildProcess {
  const args = [
    spec.rootDir,
    spec.isolateNetwork ? '1' : '0',
    spec.workingDir,
    String(spec.uid),
    String(spec.gid),
    spec.groups.join(','),
    spec.dropAllCapabilities ? '1' : '0',
    spec.noNewPrivileges ? '1' : '0',
    String(spec.mounts.length),
  ];
  for (const m of spec.mounts) args.push(m.type, m.source, m.target, m.readOnly ? 'ro' : 'rw');
  // setpriv runs `sh -c 'cd WD && exec "$@"'` so the command starts in its working directory.
  args.push('--', '/bin/sh', '-c', 'cd "$0" && exec "$@"', spec.workingDir, ...spec.argv);
  const unshare = ['--mount', '--propagation', 'private', '--pid', '--fork', ...(spec.isolateNetwork ? ['--net'] : [])];
  return spawn(UNSHARE, [...unshare, '--', '/bin/sh', '-c', SCRIPT, 'fakekube-launch', ...args], {
    detached: true,
    // fd 3 tells the kubelet the container is set up and its command is being exec'd
    stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
    env: spec.env,
  });
}
