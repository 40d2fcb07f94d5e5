/** Labels on every container the server creates, so it can find (and reap) its own. */
export const LABEL_MANAGED = 'io.sandboxshift.managed';
export const LABEL_SERVER = 'io.sandboxshift.server';
export const LABEL_TASK = 'io.sandboxshift.task';
/** On a container whose stdin goes through its per-task pipe (src/runtime/stdin-fifo.ts). */
export const LABEL_STDIN = 'io.sandboxshift.stdin';
/** The pool slot of a container started before its task. */
export const LABEL_SLOT = 'io.sandboxshift.slot';

export function taskLabels(serverId: string, taskId: string, extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return { ...extra, [LABEL_MANAGED]: '1', [LABEL_SERVER]: serverId, [LABEL_TASK]: taskId };
}

/** Image label naming the egress relay binary inside the image (images/relay/sbx-relay.c). */
export const LABEL_RELAY = 'io.sandboxshift.relay';
/** Image label, `1` when the image's relay has the stdin mode (`sbx-relay --stdin FIFO -- ...`). */
export const LABEL_RELAY_STDIN = 'io.sandboxshift.relay.stdin';
