import type { FastifyInstance } from 'fastify';

/** What a listed origin's pages may send and read. */
export const CORS_METHODS = 'GET, POST, DELETE';
export const CORS_REQUEST_HEADERS = 'Authorization, Content-Type, Accept, Last-Event-ID';
export const CORS_EXPOSED_HEADERS = 'Retry-After, Content-Disposition, X-SandboxShift-Omitted';
/** How long a browser may cache a preflight answer, in seconds. */
const MAX_AGE = '600';

const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/**
 * CORS for the origins of `http.allowedOrigins` (the Origin check before this hook has refused
 * every other origin already): a preflight (`OPTIONS` with `Access-Control-Request-Method`) is
 * answered 204 with the methods and headers the API takes, before authentication (browsers send
 * no credentials on a preflight); every other response to a listed origin carries
 * `Access-Control-Allow-Origin` echoing it. Nothing is added for any other origin, the server's
 * own included (same-origin pages need no CORS). No credentials mode: keys travel in
 * Authorization, never in cookies.
 */
export function registerCors(app: FastifyInstance, allowedOrigins: readonly string[]): void {
  const listed = new Set(allowedOrigins);
  if (listed.size === 0) return;
  const allowed = (origin: string | undefined): origin is string => origin !== undefined && listed.has(origin);

  app.addHook('onRequest', async (req, reply) => {
    const origin = single(req.headers.origin);
    if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined || !allowed(origin)) return;
    return reply
      .code(204)
      .headers({
        'access-control-allow-origin': origin,
        'access-control-allow-methods': CORS_METHODS,
        'access-control-allow-headers': CORS_REQUEST_HEADERS,
        'access-control-max-age': MAX_AGE,
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      })
      .send();
  });

  app.addHook('onSend', async (req, reply, payload) => {
    // The answer depends on Origin whenever origins are listed: caches must keep them apart.
    if (!reply.hasHeader('vary')) reply.header('vary', 'Origin');
    const origin = single(req.headers.origin);
    if (allowed(origin) && !reply.hasHeader('access-control-allow-origin')) {
      reply.header('access-control-allow-origin', origin);
      reply.header('access-control-expose-headers', CORS_EXPOSED_HEADERS);
    }
    return payload;
  });
}
