/** What replaces each run of secret bytes in a task's output. */
export const MASK = Buffer.from('***');

interface Node {
  next: Map<number, number>;
  fail: number;
  depth: number;
  /** Lengths of the values that end here (directly or through fail links). */
  ends: number[];
  /** Depth of the deepest node on this node's fail chain (itself included) that a value extends. */
  hold: number;
}

/**
 * Aho–Corasick automaton over the secret values (bytes): one pass over the output finds every
 * occurrence of every value, and its state says how long a suffix of what was read could still
 * begin a value.
 */
export class SecretAutomaton {
  readonly nodes: Node[] = [{ next: new Map(), fail: 0, depth: 0, ends: [], hold: 0 }];

  constructor(values: readonly Buffer[]) {
    for (const v of values) {
      if (v.length === 0) continue;
      let at = 0;
      for (const b of v) {
        let n = this.nodes[at]!.next.get(b);
        if (n === undefined) {
          n = this.nodes.length;
          this.nodes.push({ next: new Map(), fail: 0, depth: this.nodes[at]!.depth + 1, ends: [], hold: 0 });
          this.nodes[at]!.next.set(b, n);
        }
        at = n;
      }
      if (!this.nodes[at]!.ends.includes(v.length)) this.nodes[at]!.ends.push(v.length);
    }
    // Breadth first: a node's fail link and inherited ends come from shallower nodes.
    const order: number[] = [];
    for (const n of this.nodes[0]!.next.values()) order.push(n);
    for (let i = 0; i < order.length; i++) {
      const id = order[i]!;
      const node = this.nodes[id]!;
      const failNode = this.nodes[node.fail]!;
      for (const len of failNode.ends) if (!node.ends.includes(len)) node.ends.push(len);
      node.hold = node.next.size > 0 ? node.depth : failNode.hold;
      for (const [b, child] of node.next) {
        let f = node.fail;
        while (f !== 0 && !this.nodes[f]!.next.has(b)) f = this.nodes[f]!.fail;
        const target = this.nodes[f]!.next.get(b);
        this.nodes[child]!.fail = target !== undefined && target !== child ? target : 0;
        order.push(child);
      }
    }
  }

  get empty(): boolean {
    return this.nodes.length === 1;
  }

  step(state: number, b: number): number {
    let s = state;
    for (;;) {
      const n = this.nodes[s]!.next.get(b);
      if (n !== undefined) return n;
      if (s === 0) return 0;
      s = this.nodes[s]!.fail;
    }
  }
}

/**
 * One output stream's masking: every byte that belongs to an occurrence of a secret value is
 * hidden, and each run of overlapping occurrences becomes one `***` (occurrences that only touch
 * are two). Streaming: `push` returns what is decided so far and holds back only bytes that could
 * still begin a value (fewer than the longest value), so a value split across reads is masked as
 * if it had come whole, and the output never depends on where reads were split. `finish` decides
 * the rest.
 */
export class SecretMask {
  private state = 0;
  /** Absolute position of the next byte read. */
  private pos = 0;
  /** Absolute position of `held[0]`: everything before it is decided and was returned. */
  private out = 0;
  private held: Buffer = Buffer.alloc(0);
  /** Occurrences [start, end) not decided yet (absolute positions). */
  private pending: [number, number][] = [];
  /** End of a run whose `***` was already returned and which reaches past `out` (else -1). */
  private openEnd = -1;

  constructor(private readonly automaton: SecretAutomaton) {}

  /** Bytes read but not returned yet (a possible beginning of a value). */
  get heldBytes(): number {
    return this.held.length;
  }

  push(data: Buffer): Buffer {
    if (this.automaton.empty) return data;
    const nodes = this.automaton.nodes;
    for (let i = 0; i < data.length; i++) {
      this.state = this.automaton.step(this.state, data[i]!);
      const end = this.pos + i + 1;
      for (const len of nodes[this.state]!.ends) this.pending.push([end - len, end]);
    }
    this.pos += data.length;
    this.held = this.held.length ? Buffer.concat([this.held, data]) : data;
    return this.decide(this.pos - nodes[this.state]!.hold);
  }

  finish(): Buffer {
    if (this.automaton.empty) return Buffer.alloc(0);
    const rest = this.decide(this.pos);
    this.state = 0;
    return rest;
  }

  /** Returns the output for [out, upTo): no occurrence that is still to come starts before upTo. */
  private decide(upTo: number): Buffer {
    const parts: Buffer[] = [];
    const runs: [number, number, boolean][] = []; // [start, end, `***` already returned]
    if (this.openEnd > this.out) runs.push([this.out, this.openEnd, true]);
    this.pending.sort((a, b) => a[0] - b[0]);
    for (const [s, e] of this.pending) {
      const last = runs[runs.length - 1];
      if (last && s < last[1]) last[1] = Math.max(last[1], e);
      else runs.push([s, e, false]);
    }
    let cursor = this.out;
    let openEnd = -1;
    const keep: [number, number][] = [];
    for (const [s, e, shown] of runs) {
      if (s >= upTo) {
        // Not decided: a later occurrence may still join it. Kept as the occurrences it merged
        // (and, for the run already shown, as its end).
        if (shown) openEnd = e;
        keep.push(...this.pending.filter(([ps]) => ps >= s && ps < e));
        continue;
      }
      if (s > cursor) parts.push(this.slice(cursor, s));
      if (!shown) parts.push(MASK);
      if (e <= upTo) cursor = e;
      else {
        // The run reaches past what is decided: later occurrences overlapping it join it.
        openEnd = e;
        cursor = upTo;
      }
    }
    if (openEnd < 0 && cursor < upTo) parts.push(this.slice(cursor, upTo));
    this.pending = keep;
    this.openEnd = openEnd;
    // Copied: what is held may be a view of the caller's buffer, which the caller reuses.
    const rest = this.held.subarray(upTo - this.out);
    this.held = rest.length ? Buffer.from(rest) : Buffer.alloc(0);
    this.out = upTo;
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  }

  private slice(from: number, to: number): Buffer {
    return this.held.subarray(from - this.out, to - this.out);
  }
}

/** Masks for a task's two output streams, from its secret values. */
export function secretMasks(values: readonly string[]): { stdout: SecretMask; stderr: SecretMask } {
  const automaton = new SecretAutomaton(values.filter((v) => v.length > 0).map((v) => Buffer.from(v)));
  return { stdout: new SecretMask(automaton), stderr: new SecretMask(automaton) };
}
