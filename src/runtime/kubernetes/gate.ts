/**
 * The stdin gate every task pod's container runs first (POSIX sh, GNU or busybox head, tar,
 * base64, cksum, tee and mkfifo). Nothing of the task runs before the server has attached and
 * written the header line `<tarBytes> <boundary|-> <stdin 0|1>`; the next <tarBytes> bytes of
 * stdin are the workspace as a tar, extracted into the working directory (/workspace). The task's
 * own stdin follows when it asked for it, else the command gets /dev/null.
 *
 * Once the command has exited the gate, which is the init of the pod's own PID namespace, kills
 * every other process left in the pod (`kill -KILL -1` reaches only that
 * namespace, and only when the gate is its PID 1), so that nothing of the task writes after it
 * and the task ends with its command, as on Podman. With a boundary it then prints `\n<boundary>\n`, the workspace as a tar in base64 lines (text, which pods/log
 * carries as it does output) and an end line `<boundary> END <cksum CRC> <tar bytes>`, or
 * `<boundary> FAILED <why>` when the archive could not be made (a tool missing from the image, tar
 * failing); the server writes the workspace back only from an archive whose end line matches it.
 * It exits with the command's status. The boundary comes over stdin, so it is in no object the
 * pod can read and not in the command's environment.
 */
export const GATE_SCRIPT = [
  'IFS=" " read -r n b s || exit 125',
  'w=$PWD',
  'case "$n" in ""|*[!0-9]*) exit 125;; esac',
  'if [ "$n" -gt 0 ]; then head -c "$n" | tar -xf - -C "$w" || exit 125; fi',
  'if [ "$s" != 1 ]; then exec </dev/null; fi',
  // In the background and waited for, so that the wrapper prints no "Killed" of its own; fd 3
  // carries stdin past the /dev/null an asynchronous command gets. The gate is PID 1, which
  // ignores a signal it has no handler for: the kubelet's SIGTERM (a stop, a timeout) is passed
  // on to the command, as an init does.
  'exec 3<&0',
  '/bin/sh -c "$1" <&3 3<&- &',
  'c=$!',
  'exec 3<&-',
  `trap 'kill -TERM "$c" 2>/dev/null' TERM`,
  'wait "$c" 2>/dev/null',
  'rc=$?',
  'while kill -0 "$c" 2>/dev/null; do wait "$c" 2>/dev/null; rc=$?; done',
  // Nothing of the write-back's own errors reaches the streams (pods/log merges them with stdout).
  'exec 2>/dev/null',
  'if [ "$$" = 1 ]; then kill -KILL -1; fi',
  'if [ "$b" = - ]; then exit $rc; fi',
  `printf '\\n%s\\n' "$b"`,
  'm=',
  'for c in base64 cksum tee mkfifo tar; do command -v "$c" >/dev/null || m="$m $c"; done',
  `if [ -n "$m" ]; then printf '%s FAILED the image lacks%s\\n' "$b" "$m"; exit $rc; fi`,
  'p=/tmp/.sandboxshift-writeback',
  'rm -f "$p"',
  `if ! mkfifo -m 600 "$p"; then printf '%s FAILED mkfifo failed in /tmp\\n' "$b"; exit $rc; fi`,
  // base64 writes to the real stdout (fd 4); the tar's status and its cksum come back in r.
  'exec 4>&1',
  `r=$( { { tar -cf - -C "$w" .; echo "tar $? ." >&3; } | tee "$p" | base64 >&4; } 3>&1 & printf 'sum %s .\\n' "$(cksum <"$p")"; wait )`,
  'rm -f "$p"',
  'case "$r" in',
  `  *"tar 0 ."*) k=\${r#*sum }; k=\${k%% .*}; printf '%s END %s\\n' "$b" "$k";;`,
  `  *) printf '%s FAILED tar could not archive the workspace\\n' "$b";;`,
  'esac',
  'exit $rc',
].join('\n');

/** Exit status of the gate itself when its header or workspace could not be read. */
export const GATE_FAILED = 125;

export function gateHeader(tarBytes: number, boundary: string | null, stdin: boolean): Buffer {
  return Buffer.from(`${tarBytes} ${boundary ?? '-'} ${stdin ? 1 : 0}\n`);
}

/** The marker line as it appears on stdout (the newline before it is the wrapper's, not the task's). */
export function boundaryMarker(boundary: string): Buffer {
  return Buffer.from(`\n${boundary}\n`);
}

/** How long bytes that could begin the marker are held before they count as output. */
const HOLD_MS = 40;

/**
 * Splits a stdout stream at the boundary marker: everything before it goes to `out`, everything
 * after it to `rest`. Bytes that could be the start of the marker are held back until decided.
 */
export class BoundarySplitter {
  private held: Buffer = Buffer.alloc(0);
  private found = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly marker: Buffer | null,
    private readonly out: (data: Buffer) => void,
    private readonly rest: (data: Buffer) => void,
  ) {}

  get passed(): boolean {
    return this.found;
  }

  /**
   * The marker was seen elsewhere (in pods/log): everything from now on goes to `rest`, and bytes
   * held back are dropped (they were the start of the marker).
   */
  skip(): void {
    clearTimeout(this.timer);
    this.found = true;
    this.held = Buffer.alloc(0);
  }

  /** Bytes are held back (not yet output). */
  get holding(): boolean {
    return this.held.length > 0;
  }

  push(chunk: Buffer): void {
    clearTimeout(this.timer);
    if (this.found) return this.rest(chunk);
    if (!this.marker) return this.out(chunk);
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const at = buf.indexOf(this.marker);
    if (at >= 0) {
      this.found = true;
      this.held = Buffer.alloc(0);
      if (at > 0) this.out(buf.subarray(0, at));
      const after = buf.subarray(at + this.marker.length);
      if (after.length) this.rest(after);
      return;
    }
    // Keep the longest suffix that is a prefix of the marker.
    let keep = Math.min(this.marker.length - 1, buf.length);
    while (keep > 0 && !buf.subarray(buf.length - keep).equals(this.marker.subarray(0, keep))) keep--;
    if (buf.length - keep > 0) this.out(buf.subarray(0, buf.length - keep));
    this.held = Buffer.from(buf.subarray(buf.length - keep));
    // The marker is one write of the wrapper: its rest follows at once, or this was output.
    if (this.held.length) this.timer = setTimeout(() => this.flush(), HOLD_MS);
  }

  /**
   * Output on the other stream came between: bytes held back are output, so that the order of the
   * two streams is kept (the wrapper writes the marker in one write after the command, which
   * reaches the reader whole).
   */
  flush(): void {
    clearTimeout(this.timer);
    if (!this.found && this.held.length) this.out(this.held);
    this.held = Buffer.alloc(0);
  }

  /** The stream ended: held bytes were output after all. */
  end(): void {
    clearTimeout(this.timer);
    if (!this.found && this.held.length) this.out(this.held);
    this.held = Buffer.alloc(0);
  }
}
