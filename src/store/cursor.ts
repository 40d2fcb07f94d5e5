/** Page cursors of task listings: an opaque encoding of the last row id served. */
export const encodeCursor = (rowid: number) => Buffer.from(`r${rowid}`).toString('base64url');

/** Returns the row id a cursor stands for, or null when it is not one of ours. */
export function decodeCursor(cursor: string): number | null {
  const m = /^r(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  return m ? Number(m[1]) : null;
}
