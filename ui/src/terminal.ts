import { Terminal } from '@xterm/xterm';
import type { Frame } from './stream.js';

const RED = '\x1b[31m';
const RESET = '\x1b[0m';
const MARK = '\x1b[1;30;43m';

/**
 * The task's output in a real terminal renderer (ANSI colours and cursor movement as a terminal
 * shows them). stdout is written as it came; stderr in red; a `gap` frame as a highlighted marker
 * line. Output only ever goes into the terminal, never into HTML.
 */
export class OutputTerminal {
  private readonly term: Terminal;
  constructor(container: HTMLElement) {
    this.term = new Terminal({
      cols: 100,
      rows: 24,
      convertEol: true,
      disableStdin: true,
      cursorStyle: 'underline',
      cursorInactiveStyle: 'none',
      scrollback: 20000,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
      fontSize: 13,
      screenReaderMode: false,
    });
    this.term.open(container);
  }

  reset(): void {
    this.term.reset();
  }

  write(frame: Frame): void {
    if (frame.type === 'stdout' || frame.type === 'stderr') {
      const data = String(frame.data ?? '');
      if (frame.type === 'stderr') this.term.write(RED + data + RESET);
      else this.term.write(data);
    } else if (frame.type === 'gap') {
      this.term.write(`${RESET}\r\n${MARK}[… ${Number(frame.droppedBytes)} bytes of ${String(frame.stream)} dropped …]${RESET}\r\n`);
    }
  }

  dispose(): void {
    this.term.dispose();
  }
}
