import { AppError } from '../errors.js';
import type { ImagesConfig } from '../config/schema.js';

export interface Detection {
  /** The image to run, or null when the markers need an explicit image. */
  name: string | null;
  markers: string[];
  languages: string[];
}

/**
 * Marker files → languages → image: no marker → the default
 * language's image; one language → its image; several → the multi image when it carries all of
 * them, else null (the caller must name an image).
 */
export function detectImage(rootEntries: Iterable<string>, images: ImagesConfig): Detection {
  const present = new Set(rootEntries);
  const markers = Object.keys(images.markers).filter((m) => present.has(m)).sort();
  const languages = [...new Set(markers.map((m) => images.markers[m]!))].sort();
  if (languages.length === 0) {
    return { name: images.languages[images.default]!.image, markers, languages };
  }
  if (languages.length === 1) return { name: images.languages[languages[0]!]!.image, markers, languages };
  const multi = images.multi;
  const carried = new Set(multi?.languages ?? []);
  if (multi && languages.every((l) => carried.has(l))) return { name: multi.image, markers, languages };
  return { name: null, markers, languages };
}

/** Every image name the table knows, with the command that builds it. */
export function imageTable(images: ImagesConfig): Map<string, { build: string; languages: string[] }> {
  const table = new Map<string, { build: string; languages: string[] }>();
  for (const [lang, entry] of Object.entries(images.languages)) {
    const prev = table.get(entry.image);
    table.set(entry.image, { build: prev?.build || entry.build, languages: [...(prev?.languages ?? []), lang] });
  }
  if (images.multi) table.set(images.multi.image, { build: images.multi.build, languages: [...images.multi.languages] });
  return table;
}

/**
 * Resolves the request's `image` ("auto" or a configured name) against the detection result.
 * Throws IMAGE_UNKNOWN or IMAGE_AMBIGUOUS.
 */
export function resolveImage(requested: string, detection: Detection, images: ImagesConfig): string {
  if (requested !== 'auto') {
    if (!imageTable(images).has(requested)) {
      throw new AppError('IMAGE_UNKNOWN', { image: requested, known: [...imageTable(images).keys()] });
    }
    return requested;
  }
  if (detection.name === null) {
    throw new AppError('IMAGE_AMBIGUOUS', { markers: detection.markers, languages: detection.languages });
  }
  return detection.name;
}
