import fastifyStatic from '@fastify/static';
import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { toAppError } from './errors.js';

/**
 * Headers on every response under /ui/ (the page, its bundle and stylesheet, and their 404s).
 * Scripts only from the page's own origin (no inline script, no eval); connections only back to
 * it (REST and the WebSocket stream). Styles allow 'unsafe-inline' because the terminal renderer
 * (@xterm/xterm's DOM renderer) writes its theme and cell metrics into <style> elements it
 * creates and colours some cells through style attributes; styles cannot run script.
 */
export const UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const UI_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': UI_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

/** The path the page is served at; the routes below it are static assets, not API operations. */
export const UI_PREFIX = '/ui/';

/**
 * GET /ui/ (index.html) and the bundled assets next to it, from `dir` (dist/ui, written by
 * `npm run build`); GET /ui redirects to /ui/. A missing file is the API's 404 NOT_FOUND, and so
 * is a path the file server refuses (dot segments, dot files, encoded separators): it names
 * nothing there is.
 */
export async function uiRoutes(app: FastifyInstance, dir: string): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook('onSend', async (_req, reply, payload) => {
      reply.headers(UI_HEADERS);
      return payload;
    });
    scope.setErrorHandler((err: FastifyError, req, reply) => {
      const status = err.statusCode ?? 500;
      const e = status >= 400 && status < 500 ? new AppError('NOT_FOUND', { method: req.method, url: req.url.split('?')[0] }) : toAppError(err);
      if (e.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
      return reply.status(e.status).send(e.toJSON());
    });
    scope.get('/ui', async (_req, reply) => reply.redirect(UI_PREFIX, 308));
    await scope.register(fastifyStatic, {
      root: dir,
      prefix: UI_PREFIX,
      index: ['index.html'],
      decorateReply: false,
      // The bundle's names do not change between builds: revalidate instead of caching blindly.
      cacheControl: true,
      maxAge: 0,
      dotfiles: 'deny',
    });
  });
}
