/**
 * Host UIDs of tasks. Every task container gets a user namespace of its own: container UIDs
 * 0–65535 map to one slot of 65536 host UIDs from the range this server owns, so the task's user
 * (container UID 65532) is a host UID no other running task has. Per-user kernel counters that
 * cannot be raised (the Unix-socket in-flight file count, and with a lowered RLIMIT_SIGPENDING the
 * queued signals) are then one task's own.
 *
 * A slot is held from before the container is created until it is removed; an adopted container's
 * slot is read back from its label, so a re-attached task and a new one never share one. A
 * pre-started pool member holds a slot under its pool slot's id; the task it is handed takes that
 * slot over (`handOver`).
 */
export const CONTAINER_UID = 65532;
export const SLOT_SIZE = 65536;
/** Host UIDs stop below this (4294967295 is the kernel's "no UID"). */
export const HOST_UID_END = 2 ** 32 - 1;

export interface IdMapping {
  containerId: number;
  hostId: number;
  size: number;
}

/** The mapping of a task whose user is `hostUid` on the host. */
export function idMappingFor(hostUid: number): IdMapping {
  return { containerId: 0, hostId: hostUid - CONTAINER_UID, size: SLOT_SIZE };
}

export class HostUidExhaustedError extends Error {
  constructor(slots: number) {
    super(`all ${slots} host UID slots are in use (sandbox.userNamespaces.slots)`);
    this.name = 'HostUidExhaustedError';
  }
}

export class HostUidPool {
  private readonly byTask = new Map<string, number>();
  private readonly used = new Set<number>();

  constructor(
    /** The first host UID of the server's range (the start of slot 0). */
    readonly firstHostUid: number,
    readonly slots: number,
  ) {
    if (!Number.isSafeInteger(firstHostUid) || firstHostUid < 1 || !Number.isSafeInteger(slots) || slots < 1) throw new Error('host UID range: bad bounds');
    if (firstHostUid + slots * SLOT_SIZE > HOST_UID_END) throw new Error(`host UID range ends above ${HOST_UID_END - 1}`);
  }

  /** The task's host UID: its own slot, the same one on a second call. */
  allocate(taskId: string): number {
    const held = this.byTask.get(taskId);
    if (held !== undefined) return held;
    for (let slot = 0; slot < this.slots; slot++) {
      if (!this.used.has(slot)) return this.take(taskId, slot);
    }
    throw new HostUidExhaustedError(this.slots);
  }

  /**
   * An adopted task's host UID (from its container's label): its slot is held again. False when
   * another task holds that slot. A UID outside this range (the range was changed between runs)
   * holds nothing: no slot of the range can collide with it.
   */
  adopt(taskId: string, hostUid: number): boolean {
    const slot = this.slotOf(hostUid);
    if (slot === null) return true;
    if (this.byTask.get(taskId) === hostUid) return true;
    if (this.used.has(slot) || this.byTask.has(taskId)) return false;
    this.take(taskId, slot);
    return true;
  }

  /**
   * `to` takes over the slot `from` holds (a pool member's, at handoff); the slot `to` held until
   * then is freed. Returns the UID `to` now has, or null (and changes nothing) when `from` holds none.
   */
  handOver(from: string, to: string): number | null {
    const uid = this.byTask.get(from);
    if (uid === undefined) return null;
    this.release(to);
    this.byTask.delete(from);
    this.byTask.set(to, uid);
    return uid;
  }

  /** Slots free now. */
  get free(): number {
    return this.slots - this.used.size;
  }

  release(taskId: string): void {
    const uid = this.byTask.get(taskId);
    if (uid === undefined) return;
    this.byTask.delete(taskId);
    this.used.delete(this.slotOf(uid)!);
  }

  get inUse(): number {
    return this.used.size;
  }

  private slotOf(hostUid: number): number | null {
    const off = hostUid - CONTAINER_UID - this.firstHostUid;
    if (!Number.isSafeInteger(off) || off < 0 || off % SLOT_SIZE !== 0) return null;
    const slot = off / SLOT_SIZE;
    return slot < this.slots ? slot : null;
  }

  private take(taskId: string, slot: number): number {
    const uid = this.firstHostUid + slot * SLOT_SIZE + CONTAINER_UID;
    this.used.add(slot);
    this.byTask.set(taskId, uid);
    return uid;
  }
}
