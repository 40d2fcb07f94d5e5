import type { Config, Isolation } from '../config/schema.js';
import { AppError } from '../errors.js';

export interface IsolationState {
  usable: boolean;
  /** Why it is not usable (null when usable). */
  reason: string | null;
}

/**
 * Which isolations can run tasks right now. runc is taken as usable (an engine that does not
 * answer has its own errors); gVisor is usable once its Podman service answers, until a check
 * (start-up, the readiness probe) finds it cannot start a hardened container.
 */
export class IsolationAvailability {
  private readonly states = new Map<Isolation, IsolationState>();

  set(isolation: Isolation, state: IsolationState): void {
    this.states.set(isolation, state);
  }

  get(isolation: Isolation): IsolationState {
    return this.states.get(isolation) ?? (isolation === 'runc' ? { usable: true, reason: null } : { usable: false, reason: 'not set up on this server' });
  }
}

/**
 * A task's isolation: the request's, else the server default. One the operator's
 * engine.allowedIsolation does not list is 422 ISOLATION_NOT_ALLOWED (naming the allowed values).
 */
export function allowedIsolation(requested: string | undefined, engine: Readonly<Config['engine']>): Isolation {
  const isolation = requested ?? engine.isolation;
  const allowed: readonly string[] = engine.allowedIsolation;
  if (!allowed.includes(isolation)) {
    throw new AppError(
      'ISOLATION_NOT_ALLOWED',
      { isolation, allowed: [...engine.allowedIsolation] },
      `Isolation "${isolation}" is not allowed on this server; allowed: ${engine.allowedIsolation.join(', ')}`,
    );
  }
  return isolation as Isolation;
}

/** An allowed isolation that cannot start containers here now is 503 ISOLATION_UNAVAILABLE. */
export function requireUsable(isolation: Isolation, availability: IsolationAvailability): void {
  const state = availability.get(isolation);
  if (!state.usable) {
    throw new AppError('ISOLATION_UNAVAILABLE', { isolation, reason: state.reason }, `Isolation "${isolation}" cannot run tasks on this server now: ${state.reason}`);
  }
}

/** Both checks: the isolation a task runs under, or the error that refuses it. */
export function chooseIsolation(requested: string | undefined, engine: Readonly<Config['engine']>, availability: IsolationAvailability): Isolation {
  const isolation = allowedIsolation(requested, engine);
  requireUsable(isolation, availability);
  return isolation;
}
