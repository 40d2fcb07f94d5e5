import t from 'tap';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { AppError } from '../../src/errors.js';
import { checkHost, hostAllowed, insideCeiling, isOverBroad, matchesPattern, parsePattern, resolveAllowlist } from '../../src/egress/policy.js';

const open = { ceiling: null, allowUnrestricted: false };

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return err instanceof AppError ? err.code : `not an AppError: ${String(err)}`;
  }
}

t.test('host names are normalised; IP literals in any spelling are refused', async (t) => {
  t.same(checkHost('API.Example.COM.'), { ok: true, host: 'api.example.com' });
  t.same(checkHost('xn--bcher-kva.example'), { ok: true, host: 'xn--bcher-kva.example' });
  for (const ip of ['10.0.0.1', '127.1', '0x7f000001', '2130706433', '0x7f.1', '[::1]', '::1', 'fe80::1', '169.254.169.254', '1.2.3.4.']) {
    t.same(checkHost(ip), { ok: false, reason: 'ip_literal' }, ip);
  }
  for (const bad of ['', 'a b', 'exa_mple.com', '-x.com', 'x-.com', 'a..b', 'bücher.de', `${'a'.repeat(64)}.com`, 'a/b', 'x.com:80']) {
    t.notOk(checkHost(bad).ok, JSON.stringify(bad));
  }
});

t.test('a host name with a port left in it is port_not_allowed (naming the host), not ip_literal', async (t) => {
  // What `CONNECT allowed.test:443:8443` or `http://allowed.test:8443:80/` leave as their host.
  t.same(checkHost('Allowed.Test:443'), { ok: false, reason: 'port_not_allowed', host: 'allowed.test' });
  t.same(checkHost('allowed.test.:8443:443'), { ok: false, reason: 'port_not_allowed', host: 'allowed.test' });
  // Still literals: an address, with or without brackets, with ports left in it.
  for (const ip of ['10.0.0.1:443', '127.1:80', '2130706433:443', '[10.0.0.1]', '[127.1]', '::ffff:127.0.0.1', 'fe80::1:443', 'a:b', 'x.com:']) {
    t.same(checkHost(ip), { ok: false, reason: 'ip_literal' }, ip);
  }
  // Brackets hold IP literals only: a bracketed name is no host name.
  for (const bad of ['[allowed.test]', '[allowed.test', '[]']) t.same(checkHost(bad), { ok: false, reason: 'invalid_host' }, bad);
  try {
    parsePattern('x.com:80');
    t.fail('a port in an allowlist entry is refused');
  } catch (err) {
    t.match((err as AppError).details, { entry: 'x.com:80', reason: 'invalid_host' });
    t.match((err as AppError).message, /without a port/);
  }
});

t.test('wildcards match subdomains, never the apex; exact names match only themselves', async (t) => {
  const w = parsePattern('*.example.org');
  t.ok(matchesPattern('a.example.org', w));
  t.ok(matchesPattern('a.b.example.org', w));
  t.notOk(matchesPattern('example.org', w), 'the apex is not matched');
  t.notOk(matchesPattern('badexample.org', w), 'a suffix without the dot is not a subdomain');
  t.notOk(matchesPattern('example.org.evil.com', w));
  const e = parsePattern('api.example.com');
  t.ok(matchesPattern('api.example.com', e));
  t.notOk(matchesPattern('x.api.example.com', e));
  t.ok(hostAllowed('example.org', [w, parsePattern('example.org')]), 'list the apex to allow it');
});

t.test('over-broad patterns are judged with the public suffix list', async (t) => {
  for (const p of ['*', '*.com', '*.co.uk', '*.github.io', '*.test']) t.ok(isOverBroad(parsePattern(p)), p);
  for (const p of ['*.example.com', '*.example.co.uk', '*.user.github.io', 'com', 'example.com']) t.notOk(isOverBroad(parsePattern(p)), p);
  t.equal(codeOf(() => resolveAllowlist({ request: ['*.co.uk'], serverDefault: [] }, open)), 'EGRESS_PATTERN_TOO_BROAD');
  t.equal(codeOf(() => resolveAllowlist({ request: ['*'], serverDefault: [] }, open)), 'EGRESS_PATTERN_TOO_BROAD');
  const r = resolveAllowlist({ request: ['*.com', 'api.example.org'], serverDefault: [] }, { ceiling: null, allowUnrestricted: true });
  t.same(r, { allow: ['*.com', 'api.example.org'], unrestricted: true, source: 'request' }, 'the operator may allow it; the task records it');
  t.same(resolveAllowlist({ request: ['api.example.org'], serverDefault: [] }, { ceiling: null, allowUnrestricted: true }).unrestricted, false);
});

t.test('invalid entries are 400 with the entry named', async (t) => {
  for (const e of ['a b', '10.0.0.1', '*.', '*.*.example.com', 'example.*', 'http://example.com', '']) {
    t.equal(codeOf(() => parsePattern(e)), 'EGRESS_PATTERN_INVALID', JSON.stringify(e));
  }
  try {
    parsePattern('10.0.0.1');
  } catch (err) {
    t.match((err as AppError).details, { entry: '10.0.0.1', reason: 'ip_literal' });
    t.equal((err as AppError).status, 400);
  }
});

t.test('the ceiling bounds every entry; asking outside it is a 422 naming the host', async (t) => {
  const ceiling = ['*.example.com', 'pypi.org', 'files.pythonhosted.org'];
  const s = { ceiling, allowUnrestricted: false };
  t.same(resolveAllowlist({ request: ['a.example.com', '*.b.example.com', 'pypi.org'], serverDefault: [] }, s).allow, ['a.example.com', '*.b.example.com', 'pypi.org']);
  for (const outside of ['example.com', 'evil.com', '*.pypi.org', 'x.pypi.org']) {
    try {
      resolveAllowlist({ request: ['pypi.org', outside], serverDefault: [] }, s);
      t.fail(`${outside} should be refused`);
    } catch (err) {
      t.equal((err as AppError).code, 'EGRESS_OUTSIDE_CEILING', outside);
      t.equal((err as AppError).status, 422);
      t.equal((err as AppError).details?.host, outside, 'the error names the host');
    }
  }
  const c = ['*.example.com'].map(parsePattern);
  t.ok(insideCeiling(parsePattern('*.example.com'), c));
  t.notOk(insideCeiling(parsePattern('*'), c));
  t.ok(insideCeiling(parsePattern('*'), [parsePattern('*')]));
  t.equal(codeOf(() => resolveAllowlist({ request: ['*'], serverDefault: [] }, { ceiling: ['*.example.com'], allowUnrestricted: true })), 'EGRESS_OUTSIDE_CEILING');
});

t.test('merge order: request replaces workspace file replaces server default', async (t) => {
  const def = ['default.example.com'];
  t.same(resolveAllowlist({ serverDefault: def }, open), { allow: def, unrestricted: false, source: 'server' });
  t.same(resolveAllowlist({ workspace: ['ws.example.com'], serverDefault: def }, open), { allow: ['ws.example.com'], unrestricted: false, source: 'workspace' });
  t.same(resolveAllowlist({ request: ['req.example.com'], workspace: ['ws.example.com'], serverDefault: def }, open).allow, ['req.example.com']);
  t.same(resolveAllowlist({ request: [], workspace: ['ws.example.com'], serverDefault: def }, open), { allow: [], unrestricted: false, source: 'request' }, 'an explicit empty list means no network');
  t.same(resolveAllowlist({ workspace: [], serverDefault: def }, open).allow, []);
  t.same(resolveAllowlist({ request: ['A.example.com', 'a.example.com.'], serverDefault: [] }, open).allow, ['a.example.com'], 'normalised and deduplicated');
  t.equal(
    codeOf(() => resolveAllowlist({ workspace: ['evil.com'], serverDefault: [] }, { ceiling: ['*.example.com'], allowUnrestricted: false })),
    'EGRESS_OUTSIDE_CEILING',
    'the workspace file is bounded by the ceiling too',
  );
});

t.test('the config section obeys the same rules: bad defaults and ceilings stop start-up', async (t) => {
  const c = parseConfig({});
  t.match(c.egress, { defaultAllow: [], ceiling: null, allowUnrestricted: false, ports: [80, 443], relayPort: 3128 });
  const broad = t.throws(() => parseConfig({ egress: { defaultAllow: ['*.com'] } })) as unknown as ConfigError;
  t.match(broad.problems.join('\n'), /egress\.defaultAllow: .*\*\.com/);
  const outside = t.throws(() => parseConfig({ egress: { defaultAllow: ['a.example.org'], ceiling: ['*.example.com'] } })) as unknown as ConfigError;
  t.match(outside.problems.join('\n'), /egress\.defaultAllow: .*outside the server's ceiling/);
  const bad = t.throws(() => parseConfig({ egress: { ceiling: ['10.0.0.0'] } })) as unknown as ConfigError;
  t.match(bad.problems.join('\n'), /egress\.ceiling: .*IP addresses are not allowed/);
  t.throws(() => parseConfig({ egress: { ports: [0] } }));
  t.throws(() => parseConfig({ egress: { maxConnectionsPerTask: 0 } }));
  t.doesNotThrow(() => parseConfig({ egress: { ceiling: ['*'], defaultAllow: ['pypi.org'] } }), 'an operator ceiling may be "*"');
  t.equal(parseConfig({ egress: { allowUnrestricted: true, defaultAllow: ['*'] } }).egress.defaultAllow[0], '*');
});
