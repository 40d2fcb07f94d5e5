import { join } from 'node:path';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import type { UpstreamProxy } from './egress/upstream.js';
import type { AuditRecorder } from './audit/recorder.js';
import { ConfigKeys, type KeyDirectory } from './auth/keys.js';
import { isLoopbackListen } from './auth/exposure.js';
import { selectSubprotocol } from './auth/subprotocol.js';
import { registerAuthentication } from './http/authenticate.js';
import { registerCors } from './http/cors.js';
import { registerBodyDeadline } from './http/body-deadline.js';
import { auditRoutes } from './http/audit.js';
import { egressRoutes } from './http/egress.js';
import { frameworkErrorHandler, registerErrorHandling } from './http/errors.js';
import { healthRoutes } from './http/health.js';
import { StreamLimiter } from './http/limiter.js';
import { logRoutes } from './http/logs.js';
import { registerAuthFailureLimit, registerTenantRateLimit } from './http/rate-limit.js';
import { metricsRoutes } from './http/metrics.js';
import { registerObservation } from './http/observe.js';
import { registerRequestGuard } from './http/request-guard.js';
import { streamRoutes } from './http/stream.js';
import { taskRoutes } from './http/tasks.js';
import { uiRoutes } from './http/ui.js';
import { workspaceIntakeRoutes } from './http/workspace-intake.js';
import { workspaceRoutes } from './http/workspaces.js';
import { Metrics } from './metrics/metrics.js';
import { installDir } from './paths.js';
import type { Readiness } from './readiness.js';
import { tenantLimits } from './tenants/limits.js';
import type { TaskManager } from './tasks/manager.js';
import { WorkspaceIntake } from './workspace/intake/intake.js';
import type { Workspaces } from './workspace/workspaces.js';

export interface AppDeps {
  config: Readonly<Config>;
  manager: TaskManager;
  workspaces: Workspaces;
  /** Where intake spools zip uploads and clones git repositories; cleared at start-up by the services. */
  intakeTmpDir: string;
  /** The CA bundle tasks and git intake trust (tasks.caBundle plus the public CAs), or null. */
  caBundlePath?: string | null;
  /** The operator's upstream proxy, which git intake goes through too, or null. */
  upstreamProxy?: UpstreamProxy | null;
  readiness: Readiness;
  openapi: () => unknown;
  log: Logger;
  /** Where API keys are looked up; default: the configuration's `auth.keys`. */
  keys?: KeyDirectory;
  /** The built web page served at /ui/; default: dist/ui of the install directory. */
  uiDir?: string;
  /** The audit log's writer (401 answers are recorded; GET /v1/audit reads it); none: an empty log. */
  audit?: AuditRecorder | null;
  /** The Prometheus metrics GET /metrics serves; default: a registry fed only by this app. */
  metrics?: Metrics;
}

/** Builds the HTTP app: plugins and routes only, no listening, no side effects. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log,
    bodyLimit: deps.config.requests.bodyBytes,
    // In-flight requests finish during shutdown; the task manager refuses new tasks with 503.
    return503OnClosing: false,
    frameworkErrors: frameworkErrorHandler,
  }) as unknown as FastifyInstance;
  registerErrorHandling(app);
  registerBodyDeadline(app, deps.config.requests.bodyTimeoutSeconds);
  // JSON, plus archives and multipart where the intake routes accept them: anything else is 415.
  app.removeContentTypeParser('text/plain');
  const intake = new WorkspaceIntake(deps.workspaces, deps.config, deps.intakeTmpDir, deps.caBundlePath ?? null, deps.upstreamProxy ?? null);
  await app.register(websocket, {
    // A browser offers its key as the subprotocol `bearer.<key>` beside `sandboxshift.v1`: the
    // server answers with `sandboxshift.v1` only, never echoing the key.
    options: { maxPayload: 2 * 1024 * 1024, handleProtocols: (offered) => selectSubprotocol(offered) },
    // Closing: every WebSocket still open gets 1001 (going away) after what was already sent.
    preClose(done) {
      for (const client of this.websocketServer.clients) client.close(1001, 'server shutting down; reconnect with ?after=');
      this.websocketServer.close();
      done();
    },
  });
  // Host and Origin checks ahead of every route, body parser and WebSocket upgrade. After the
  // websocket plugin's own onRequest hook (it only marks upgrade requests), so that a refused
  // upgrade's socket is still closed once the JSON error has been written.
  registerRequestGuard(app, {
    listenHost: deps.config.listen.host,
    allowedHosts: deps.config.http.allowedHosts,
    allowedOrigins: deps.config.http.allowedOrigins,
  });
  // CORS preflights of listed origins are answered here, before authentication (they carry no key).
  registerCors(app, deps.config.http.allowedOrigins);
  // Failed authentication is limited per client address (before the key is looked at), requests
  // per tenant after it.
  registerAuthFailureLimit(app, deps.config.requests.authFailuresPerMinute);
  registerAuthentication(app, deps.keys ?? new ConfigKeys(deps.config.auth.keys), { required: !isLoopbackListen(deps.config.listen.host) });
  registerTenantRateLimit(app, (tenant) => tenantLimits(deps.config, tenant).requestsPerMinute);
  const metrics = deps.metrics ?? new Metrics();
  registerObservation(app, deps.audit ?? null, metrics);
  const streams = new StreamLimiter(deps.config.requests.maxStreams, deps.config.queue.retryAfterSeconds);
  metrics.observeSubscribers(() => streams.openCount);
  await app.register(async (scope) => {
    await workspaceIntakeRoutes(scope, intake, deps.config);
    taskRoutes(scope, deps.manager, intake, deps.config);
    egressRoutes(scope, deps.manager);
    logRoutes(scope, deps.manager, streams);
    streamRoutes(scope, deps.manager, streams, deps.config.output.subscriberBacklogBytes);
    workspaceRoutes(scope, deps.workspaces, deps.config, (id) => deps.manager.workspaceBusy(id));
    auditRoutes(scope, deps.audit ?? null, deps.config);
    metricsRoutes(scope, metrics);
    healthRoutes(scope, deps.readiness, deps.openapi);
    await uiRoutes(scope, deps.uiDir ?? join(installDir(), 'dist', 'ui'));
  });
  return app;
}
