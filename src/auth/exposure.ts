import { isIP } from 'node:net';

/** A listen address only this machine can reach: 127.0.0.0/8, ::1 (also IPv4-mapped), `localhost`. */
export function isLoopbackListen(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.replace(/^::ffff:/, '');
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * Why the server must not listen on `host`, or null. Without any API key every caller acts as an
 * admin of the default tenant, i.e. whoever reaches the port runs code: that is only acceptable on
 * loopback.
 */
export function exposureRefusal(host: string, hasKeys: boolean): string | null {
  if (hasKeys || isLoopbackListen(host)) return null;
  return (
    `listen.host is ${JSON.stringify(host)}, which is not a loopback address, and the server has no API keys: ` +
    'anyone who reaches the port could run code. Create a key (sandboxshift keys create --tenant NAME), ' +
    'configure auth.keys, or listen on 127.0.0.1'
  );
}
