import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';

/** Parses `value` with `schema`, or throws VALIDATION_FAILED listing every issue by path. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new AppError(
    'VALIDATION_FAILED',
    { in: where, issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
    `The ${where} does not match the schema: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
  );
}

/**
 * A JSON parser's message without the text it quotes (V8 quotes the body it failed on, which may
 * hold a secretEnv value).
 */
export function jsonErrorReason(err: Error): string {
  return err.message.replace(/, (\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, ' (not valid JSON)');
}

/** The one place that turns errors into HTTP responses. */
export function toAppError(err: FastifyError | Error): AppError {
  if (err instanceof AppError) return err;
  const code = (err as FastifyError).code;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('BODY_TOO_LARGE', { limit: (err as FastifyError & { limit?: number }).limit });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', { accepted: ['application/json'] });
    case 'FST_ERR_BAD_URL':
      // A path that is not even valid percent-encoding names nothing that exists.
      return new AppError('NOT_FOUND', { reason: 'malformed URL' });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError('MALFORMED_JSON', { reason: jsonErrorReason(err) });
    default:
      if (err instanceof SyntaxError || (err as FastifyError).statusCode === 400) {
        return new AppError('MALFORMED_JSON', { reason: jsonErrorReason(err) });
      }
      return new AppError('INTERNAL');
  }
}

/** For Fastify's `frameworkErrors` option: errors raised before routing (e.g. a malformed URL). */
export function frameworkErrorHandler(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const appErr = toAppError(err);
  void reply.status(appErr.status).send(appErr.toJSON());
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const appErr = toAppError(err as FastifyError);
    if (appErr.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
    if (appErr.headers) reply.headers(appErr.headers);
    return reply.status(appErr.status).send(appErr.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new AppError('NOT_FOUND', { method: req.method, url: req.url.split('?')[0] });
    return reply.status(e.status).send(e.toJSON());
  });
}
