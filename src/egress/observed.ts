import { EventEmitter } from 'node:events';
import type { DecisionSink, EgressDecision } from './decisions.js';

/**
 * The proxy's decision sink, observed: every decision is passed on to the store and emitted as
 * `decision` (for the audit log and metrics), also when the store drops it for the per-task bound.
 */
export class ObservedDecisions extends EventEmitter<{ decision: [taskId: string, decision: Readonly<EgressDecision>] }> implements DecisionSink {
  constructor(private readonly inner: DecisionSink) {
    super();
  }

  addEgressDecision(taskId: string, d: EgressDecision, max: number): number | null {
    const id = this.inner.addEgressDecision(taskId, d, max);
    this.emit('decision', taskId, d);
    return id;
  }

  setEgressBytes(id: number, bytesUp: number, bytesDown: number): void {
    this.inner.setEgressBytes(id, bytesUp, bytesDown);
  }
}
