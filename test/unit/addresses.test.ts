import t from 'tap';
import { buildRangeList, createResolver, forbiddenReason, parseCidr } from '../../src/egress/addresses.js';

t.test('forbidden destinations', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', 'loopback'],
    ['::1', 'loopback'],
    ['[::ffff:127.0.0.1]', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.31.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['100.100.1.1', 'cgnat'],
    ['169.254.169.254', 'link_local'],
    ['fd00:ec2::254', 'unique_local'],
    ['fe80::1', 'link_local'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['8.8.8.8', null],
    ['2606:4700::1111', null],
    ['172.32.0.1', null],
    ['nonsense', 'not_an_address'],
  ];
  for (const [ip, reason] of cases) t.equal(forbiddenReason(ip), reason, ip);
});

t.test('operator test ranges open only what they list', async (t) => {
  const allowed = buildRangeList(['127.0.0.0/8', '::1']);
  t.equal(forbiddenReason('127.0.0.1', allowed), null);
  t.equal(forbiddenReason('::1', allowed), null);
  t.equal(forbiddenReason('10.0.0.1', allowed), 'private');
  t.equal(parseCidr('10.0.0.0/33'), null);
  t.equal(parseCidr('10.0.0.0/8/1'), null);
  t.equal(parseCidr('x/8'), null);
  t.same(parseCidr('fd00::/8'), { address: 'fd00::', prefix: 8, family: 'ipv6' });
  t.throws(() => buildRangeList(['bogus']));
});

t.test('resolver uses the static table, then literals', async (t) => {
  const resolve = createResolver({ 'repo.test': ['127.0.0.1'] });
  t.same(await resolve('REPO.test'), [{ address: '127.0.0.1', family: 4 }]);
  t.same(await resolve('[::1]'), [{ address: '::1', family: 6 }]);
  t.same(await resolve('10.0.0.1'), [{ address: '10.0.0.1', family: 4 }]);
});

t.test("the host's own addresses are refused like loopback, unless a test range allows them", async (t) => {
  const { destinationReason, localInterfaceAddresses } = await import('../../src/egress/addresses.js');
  const local = new Set(['198.51.99.7', '2001:4860:0:1::7']);
  t.equal(destinationReason('198.51.99.7', undefined, local), 'local_interface', "a public-looking address of this host");
  t.equal(destinationReason('[2001:4860:0:1::7]', undefined, local), 'local_interface');
  t.equal(destinationReason('::ffff:198.51.99.7', undefined, local), 'local_interface', 'IPv4-mapped spelling');
  t.equal(destinationReason('198.51.99.8', undefined, local), null, 'control: the neighbouring public address is fine');
  t.equal(destinationReason('198.51.99.7', buildRangeList(['198.51.99.7']), local), null, 'an operator test range opens it');
  t.equal(destinationReason('10.0.0.1', undefined, local), 'private', 'categories come first');
  t.ok(localInterfaceAddresses().has('127.0.0.1'), 'the real interface list includes loopback');
});
