import { Parser } from 'tar';

export interface TarEntry {
  path: string;
  type: string;
  linkpath: string;
  mode: number;
  content: Buffer;
}

/** Parses a tar.gz (or tar) buffer into its entries, contents included: what a client would see. */
export function readTarGz(buf: Buffer): Promise<TarEntry[]> {
  return new Promise((resolve, reject) => {
    const entries: TarEntry[] = [];
    const p = new Parser({
      strict: true,
      onReadEntry: (e) => {
        const chunks: Buffer[] = [];
        e.on('data', (c: Buffer) => chunks.push(c));
        e.on('end', () =>
          entries.push({ path: e.path, type: e.type, linkpath: e.linkpath ?? '', mode: e.mode ?? 0, content: Buffer.concat(chunks) }),
        );
      },
    });
    p.on('error', reject);
    p.on('end', () => resolve(entries));
    p.end(buf);
  });
}

/** GET a binary body. */
export async function getBytes(url: string): Promise<{ status: number; body: Buffer; type: string | null }> {
  const res = await fetch(url);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), type: res.headers.get('content-type') };
}
