/** One self-rewriting line on a TTY: bytes sent of the total and the rate. Nothing off a TTY. */
export class ProgressLine {
  private readonly started = Date.now();
  private last = 0;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly label: string,
  ) {}

  static for(out: NodeJS.WriteStream, label: string, quiet: boolean): ProgressLine | null {
    return !quiet && out.isTTY ? new ProgressLine(out, label) : null;
  }

  update(sent: number, total: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 100 && sent < total) return;
    this.last = now;
    const secs = Math.max(0.001, (now - this.started) / 1000);
    const pct = total > 0 ? Math.floor((sent / total) * 100) : 100;
    const width = 20;
    const filled = Math.round((pct / 100) * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    this.out.write(`\r${this.label} [${bar}] ${pct}% ${formatBytes(sent)}/${formatBytes(total)} ${formatBytes(sent / secs)}/s\x1b[K`);
  }

  done(): void {
    this.out.write('\n');
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
