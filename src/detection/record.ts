import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DEFAULT_IMAGES, imageName, type Config, type ImagesConfig } from '../config/schema.js';

/**
 * The image record: `<dataDir>/images.json`, written by scripts/setup.sh after it built (or found)
 * the runtime images. An offline build carries its real toolchain version in its tag
 * (`sandboxshift/runtime-go:1.19`, not the registry image's `:1.22`), so the built-in table would
 * name images this machine can never have; the record tells the server which tags and which build
 * commands this machine's build path really produces. No config file is needed for that.
 */
export const IMAGE_RECORD_FILE = 'images.json';

const recordEntry = z.strictObject({
  image: imageName.describe('The tag the build path produces'),
  build: z.string().max(500).describe('Command that builds it on this machine'),
  built: z.boolean().describe('Whether the image was present when the record was written'),
  versions: z.record(z.string().max(64), z.string().max(64)).optional().describe('Toolchain versions (from the image labels)'),
});

export const imageRecordSchema = z.strictObject({
  version: z.literal(1),
  mode: z.enum(['offline', 'registry']).describe('How the images were built'),
  recordedAt: z.string().max(64).optional(),
  images: z
    .record(z.string().min(1).max(32), recordEntry)
    .refine((r) => Object.keys(r).length <= 64, 'at most 64 entries')
    .describe('Language name (or "multi") → the image this machine builds for it'),
});

export type ImageRecord = z.infer<typeof imageRecordSchema>;

/** Reads `<dataDir>/images.json`: no file → null; a broken file → the reason (never a throw). */
export function readImageRecord(dataDir: string): { record: ImageRecord | null; error: string | null } {
  const path = join(dataDir, IMAGE_RECORD_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { record: null, error: null };
    return { record: null, error: `cannot read ${path}: ${(err as Error).message}` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { record: null, error: `${path} is not valid JSON: ${(err as Error).message}` };
  }
  const parsed = imageRecordSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    return { record: null, error: `${path} is not a valid image record: ${problems.join('; ')}` };
  }
  return { record: parsed.data, error: null };
}

const sameEntry = (a: { image: string; build: string }, b: { image: string; build: string } | undefined) =>
  b !== undefined && a.image === b.image && a.build === b.build;

/**
 * The image table with the record on top of the built-in defaults. A recorded entry replaces a
 * language's (or the multi image's) entry only while that entry is still the built-in default:
 * an image an operator configured explicitly always wins. Languages the table does not have are
 * ignored (markers and the multi rule stay consistent).
 */
export function applyImageRecord(images: ImagesConfig, record: ImageRecord | null): ImagesConfig {
  if (!record) return images;
  const builtIn = DEFAULT_IMAGES.languages as Record<string, { image: string; build: string }>;
  const languages = { ...images.languages };
  for (const [lang, entry] of Object.entries(images.languages)) {
    const recorded = record.images[lang];
    if (recorded && sameEntry(entry, builtIn[lang])) languages[lang] = { image: recorded.image, build: recorded.build };
  }
  let multi = images.multi;
  const recordedMulti = record.images.multi;
  if (multi && recordedMulti && sameEntry(multi, DEFAULT_IMAGES.multi)) {
    multi = { ...multi, image: recordedMulti.image, build: recordedMulti.build };
  }
  // requiredForReady names images explicitly; map built-in names to their recorded tags.
  const renamed = new Map<string, string>();
  for (const [lang, entry] of Object.entries(images.languages)) renamed.set(entry.image, languages[lang]!.image);
  if (images.multi && multi) renamed.set(images.multi.image, multi.image);
  const requiredForReady = images.requiredForReady?.map((n) => renamed.get(n) ?? n) ?? null;
  return { ...images, languages, multi, requiredForReady };
}

/** The config with the data directory's image record applied (a new frozen object). */
export function withImageRecord(config: Readonly<Config>, record: ImageRecord | null): Readonly<Config> {
  if (!record) return config;
  return deepFreeze({ ...config, images: applyImageRecord(config.images, record) });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
