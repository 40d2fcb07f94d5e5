/**
 * Appends records to an audit log from a process of its own (the concurrency test runs several):
 * node <tap's TypeScript loader> audit-append.ts <path> <rotateBytes> <count> <label>.
 */
import { AuditLog } from '../../src/audit/log.js';

const [path, rotateBytes, count, label] = process.argv.slice(2);
const log = new AuditLog(path!, Number(rotateBytes));
for (let i = 0; i < Number(count); i++) log.append({ event: 'test.append', tenant: null, keyId: null, writer: label!, i });
