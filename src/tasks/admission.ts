import type { Config, Isolation } from '../config/schema.js';
import { detectImage, imageTable, resolveImage, type Detection } from '../detection/detect.js';
import { resolveAllowlist } from '../egress/policy.js';
import { AppError } from '../errors.js';
import type { ContainerEngine } from '../runtime/engine.js';
import { LABEL_RELAY, LABEL_RELAY_STDIN } from '../runtime/labels.js';
import { parseProjectFile } from '../workspace/projectfile.js';
import { allowedIsolation } from './isolation.js';
import { resolveLimits } from './limits.js';
import type { CreateTaskBody } from './schemas.js';

/** What admission needs to know of the workspace a task will run on. */
export interface WorkspaceFacts {
  /** Regular files in the workspace's root (marker detection). */
  rootEntries: string[];
  /** The text of its sandboxshift.yaml, or null. */
  projectFile: string | null;
  /**
   * The workspace exists apart from the request (named by id, or a multipart archive): a
   * `workspace.readonly` taken from its file is listed in `fromProjectFile`.
   */
  stored: boolean;
}

/** Everything the task record takes from admission. */
export interface TaskPlan {
  image: string;
  detection: Detection;
  resources: { cpus: number; memoryMb: number; pids: number };
  timeoutSeconds: number;
  env: Record<string, string>;
  /** Kept in memory and, encrypted, in the vault; never in the task record. */
  secretEnv: Record<string, string>;
  setup: string | null;
  fromFile: string[];
  readonly: boolean;
  network: { allow: string[]; unrestricted: boolean };
  isolation: Isolation;
}

type AdmissionConfig = Pick<Config, 'defaults' | 'maxima' | 'requests' | 'images' | 'egress' | 'engine'>;

/**
 * The checks a task passes before anything is created for it, in the order clients see them:
 * the workspace's sandboxshift.yaml, the limits, the egress allowlist, the image. The file
 * supplies defaults, the request overrides them, the server maxima bound both. Pure: the engine
 * checks (requireImage, requireRelay) and the queue's room come after it.
 */
export function planTask(body: CreateTaskBody, facts: WorkspaceFacts, config: AdmissionConfig): TaskPlan {
  // The isolation first: a runtime the operator does not allow refuses the task whatever else it asks.
  const isolation = allowedIsolation(body.isolation, config.engine);
  const project = facts.projectFile === null ? {} : parseProjectFile(facts.projectFile);
  const { resources, timeoutSeconds, env, secretEnv, setup, fromFile } = resolveLimits(body, config, project);
  const ws = body.workspace;
  const requested = ws && 'id' in ws ? ws.readonly : undefined;
  const readonly = requested ?? project.readonly ?? false;
  if (facts.stored && requested === undefined && project.readonly !== undefined) fromFile.push('workspace.readonly');
  // Egress allowlist: the request's list replaces the file's, which replaces the server default.
  const network = resolveAllowlist({ request: body.network?.allow, workspace: project.allow, serverDefault: config.egress.defaultAllow }, config.egress);
  if (body.network === undefined && project.allow !== undefined) fromFile.push('network.allow');
  const detection = detectImage(facts.rootEntries, config.images);
  const image = resolveImage(body.image, detection, config.images);
  return { image, detection, resources, timeoutSeconds, env, secretEnv, setup, fromFile, readonly, network: { allow: network.allow, unrestricted: network.unrestricted }, isolation };
}

/**
 * The request's own values against the server maxima, before a multipart archive is read (the
 * workspace's file, which may add defaults, is checked with the rest in planTask).
 */
export function checkRequestLimits(body: CreateTaskBody, config: Pick<Config, 'defaults' | 'maxima' | 'requests'>): void {
  resolveLimits(body, config);
}

/** The planned image must be present in the engine (IMAGE_MISSING names its build command). */
export async function requireImage(engine: ContainerEngine, image: string, config: Pick<Config, 'images'>): Promise<void> {
  let present: boolean;
  try {
    present = await engine.imagePresent(image);
  } catch (err) {
    throw new AppError('ENGINE_UNAVAILABLE', { reason: (err as Error).message });
  }
  if (!present) {
    const build = imageTable(config.images).get(image)?.build ?? '';
    throw new AppError('IMAGE_MISSING', { image, build }, `Image ${image} is not present; build it with: ${build}`);
  }
}

/** A task with an allowlist needs an image that declares its egress relay. */
export async function requireRelay(engine: ContainerEngine, image: string): Promise<void> {
  if ((await imageRelay(engine, image)) !== null) return;
  throw new AppError(
    'EGRESS_RELAY_MISSING',
    { image, label: LABEL_RELAY },
    `Image ${image} has no egress relay (label ${LABEL_RELAY}), so a task in it cannot have an allowlist`,
  );
}

/** The relay path the image declares (label io.sandboxshift.relay), or null. */
export async function imageRelay(engine: ContainerEngine, image: string): Promise<string | null> {
  let labels: Record<string, string> | null;
  try {
    labels = await engine.imageLabels(image);
  } catch (err) {
    throw new AppError('ENGINE_UNAVAILABLE', { reason: (err as Error).message });
  }
  return relayOf(labels);
}

function relayOf(labels: Record<string, string> | null): string | null {
  const relay = labels?.[LABEL_RELAY];
  return relay && /^\/[A-Za-z0-9._\/-]+$/.test(relay) ? relay : null;
}

/**
 * The relay path when the image's relay also has the stdin mode (label io.sandboxshift.relay.stdin
 * = 1), or null: a task with stdin in such an image gets it through the engine's attach.
 */
export async function imageStdinRelay(engine: ContainerEngine, image: string): Promise<string | null> {
  const labels = await engine.imageLabels(image);
  return labels?.[LABEL_RELAY_STDIN] === '1' ? relayOf(labels) : null;
}
