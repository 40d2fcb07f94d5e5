import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { OPEN_PATHS } from './authenticate.js';

/** Most buckets kept per limiter; the least recently used goes first (bounded under many addresses). */
const MAX_BUCKETS = 10_000;

/**
 * Token buckets by key: each holds up to `perMinute` tokens and refills `perMinute` per minute,
 * evenly. A key whose bucket is empty is limited until the next token arrives.
 */
export class RateBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number = () => Date.now()) {}

  private refill(key: string, perMinute: number): { tokens: number; at: number } {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: perMinute, at: now };
    b.tokens = Math.min(perMinute, b.tokens + ((now - b.at) * perMinute) / 60_000);
    b.at = now;
    // Re-inserted: Map order is the eviction order (least recently used first).
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    return b;
  }

  /** Seconds until `key` has a token again (0: it has one now). */
  waitSeconds(key: string, perMinute: number): number {
    const b = this.refill(key, perMinute);
    if (b.tokens >= 1) return 0;
    const ms = Math.round(((1 - b.tokens) * 60_000) / perMinute);
    return Math.max(1, Math.ceil(ms / 1000));
  }

  /** Takes a token if there is one; otherwise the seconds until there is. */
  take(key: string, perMinute: number): number {
    const wait = this.waitSeconds(key, perMinute);
    if (wait === 0) this.buckets.get(key)!.tokens -= 1;
    return wait;
  }

  get size(): number {
    return this.buckets.size;
  }
}

const limited = (kind: 'tenant' | 'address', retryAfter: number) =>
  new AppError('RATE_LIMITED', { limit: kind === 'tenant' ? 'tenants.requestsPerMinute' : 'requests.authFailuresPerMinute', retryAfterSeconds: retryAfter }, undefined, {
    'retry-after': String(retryAfter),
  });

const isOpen = (req: FastifyRequest) => OPEN_PATHS.has(req.url.split('?', 1)[0]!);

/**
 * Failed authentication per client address: every 401 answered to an address takes a token of its
 * bucket (`perMinute`); while the bucket is empty, every request from that address but the open
 * routes gets 429 RATE_LIMITED with Retry-After, before its key is looked at. Register before the
 * authentication hook.
 */
export function registerAuthFailureLimit(app: FastifyInstance, perMinute: number, buckets = new RateBuckets()): void {
  app.addHook('onRequest', async (req) => {
    if (isOpen(req)) return;
    const wait = buckets.waitSeconds(req.ip, perMinute);
    if (wait > 0) throw limited('address', wait);
  });
  app.addHook('onResponse', async (req, reply) => {
    if (reply.statusCode === 401) buckets.take(req.ip, perMinute);
  });
}

/**
 * Requests per tenant (`rate(tenant)` per minute): every request but the open routes takes a
 * token of its principal's tenant; an empty bucket is 429 RATE_LIMITED with Retry-After. Register
 * after the authentication hook.
 */
export function registerTenantRateLimit(app: FastifyInstance, rate: (tenant: string) => number, buckets = new RateBuckets()): void {
  app.addHook('onRequest', async (req) => {
    if (isOpen(req)) return;
    const wait = buckets.take(req.principal.tenant, rate(req.principal.tenant));
    if (wait > 0) throw limited('tenant', wait);
  });
}
