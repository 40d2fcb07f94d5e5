import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/**
 * The secretEnv of queued and running tasks, kept across restarts only encrypted: one file per
 * task under `dir`, AES-256-GCM with a random IV and the task id as additional data (a file
 * renamed to another task does not decrypt), under a key of the server's in `keyPath` (mode
 * 0600, created on first use). A task's file is deleted when the task ends.
 */
export class SecretVault {
  private key: Buffer | null = null;

  constructor(
    private readonly dir: string,
    private readonly keyPath: string,
  ) {}

  put(taskId: string, values: Readonly<Record<string, string>>): void {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.loadKey(), iv);
    cipher.setAAD(Buffer.from(taskId));
    const sealed = Buffer.concat([cipher.update(JSON.stringify(values), 'utf8'), cipher.final()]);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const path = this.path(taskId);
    const fd = openSync(`${path}.tmp`, 'w', 0o600);
    try {
      writeSync(fd, Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), sealed]));
    } finally {
      closeSync(fd);
    }
    renameSync(`${path}.tmp`, path);
  }

  /** The task's values, or null when none are kept; throws when the file does not decrypt. */
  get(taskId: string): Record<string, string> | null {
    let data: Buffer;
    try {
      data = readFileSync(this.path(taskId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (data.length < 1 + IV_BYTES + TAG_BYTES || data[0] !== VERSION) throw new Error('the stored secrets are not in a format this server writes');
    const decipher = createDecipheriv('aes-256-gcm', this.loadKey(), data.subarray(1, 1 + IV_BYTES));
    decipher.setAAD(Buffer.from(taskId));
    decipher.setAuthTag(data.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
    const plain = Buffer.concat([decipher.update(data.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    return JSON.parse(plain.toString('utf8')) as Record<string, string>;
  }

  delete(taskId: string): void {
    rmSync(this.path(taskId), { force: true });
  }

  /** Start-up: deletes the stored secrets of every task not in `keep` (ended while the server was down). */
  sweep(keep: ReadonlySet<string>): number {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const id = name.replace(/\.enc(\.tmp)?$/, '');
      if (keep.has(id) && name.endsWith('.enc')) continue;
      rmSync(join(this.dir, name), { force: true });
      removed++;
    }
    return removed;
  }

  private path(taskId: string): string {
    if (!/^tsk_[A-Za-z0-9_-]{1,64}$/.test(taskId)) throw new Error(`not a task id: ${taskId}`);
    return join(this.dir, `${taskId}.enc`);
  }

  /** The server's key: read, or created (0600, exclusively) the first time a secret is kept. */
  private loadKey(): Buffer {
    if (this.key) return this.key;
    let fd: number;
    try {
      fd = openSync(this.keyPath, 'wx', 0o600);
      try {
        writeSync(fd, randomBytes(KEY_BYTES));
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    fd = openSync(this.keyPath, 'r');
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || (st.mode & 0o077) !== 0) throw new Error(`the secrets key ${this.keyPath} must be a regular file of mode 0600`);
      const key = readFileSync(fd);
      if (key.length !== KEY_BYTES) throw new Error(`the secrets key ${this.keyPath} is not ${KEY_BYTES} bytes`);
      this.key = key;
      return key;
    } finally {
      closeSync(fd);
    }
  }
}
