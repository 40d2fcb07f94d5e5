import t from 'tap';
import { chooseSocket } from '../../src/runtime/service.js';
import { StreamDemuxer } from '../../src/runtime/demux.js';

t.test('socket discovery: config, then CONTAINER_HOST, then DOCKER_HOST, else owned', async (t) => {
  t.same(chooseSocket('/a.sock', { CONTAINER_HOST: 'unix:///b.sock' }, '/own.sock'), { socketPath: '/a.sock', source: 'config' });
  t.same(chooseSocket('unix:///a.sock', {}, '/own.sock'), { socketPath: '/a.sock', source: 'config' });
  t.same(chooseSocket(null, { CONTAINER_HOST: 'unix:///b.sock', DOCKER_HOST: 'unix:///c.sock' }, '/own.sock'), { socketPath: '/b.sock', source: 'CONTAINER_HOST' });
  t.same(chooseSocket(null, { DOCKER_HOST: 'unix:///c.sock' }, '/own.sock'), { socketPath: '/c.sock', source: 'DOCKER_HOST' });
  t.same(chooseSocket(null, {}, '/own.sock'), { socketPath: '/own.sock', source: 'owned' });
  t.throws(() => chooseSocket(null, { DOCKER_HOST: 'tcp://10.0.0.1:2375' }, '/own.sock'), /must be a unix socket/);
});

t.test('the attach stream demuxer splits frames across arbitrary chunk boundaries', async (t) => {
  const frame = (type: number, s: string) => {
    const p = Buffer.from(s);
    const h = Buffer.alloc(8);
    h[0] = type;
    h.writeUInt32BE(p.length, 4);
    return Buffer.concat([h, p]);
  };
  const wire = Buffer.concat([frame(1, 'out1'), frame(2, 'err1'), frame(1, ''), frame(1, 'out2')]);
  for (const size of [1, 3, 8, 9, 100]) {
    const got: string[] = [];
    const d = new StreamDemuxer((stream, data) => got.push(`${stream}:${data.toString()}`));
    for (let i = 0; i < wire.length; i += size) d.push(wire.subarray(i, i + size));
    t.same(got, ['stdout:out1', 'stderr:err1', 'stdout:out2'], `chunks of ${size}: whole payloads, empty frames skipped`);
  }
});
