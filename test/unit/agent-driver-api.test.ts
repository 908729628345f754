/**
 * DockerDriver behaviours that the real engine of the test bed cannot be made to show on
 * demand (a dropped event stream, an error in the middle of a pull): a tiny HTTP server on
 * a unix socket plays the Engine API. Everything else is proven on the real engine in
 * test/e2e/agent-driver.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../agent/driver/docker.js';
import { DriverError } from '../../agent/driver/errors.js';
import type { DriverEvent } from '../../agent/driver/types.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let dir: string;
let server: Server;
let handler: Handler;
const seen: string[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kb-fake-engine-'));
  seen.length = 0;
  server = createServer((req, res) => { seen.push(`${req.method} ${req.url}`); handler(req, res); });
  await new Promise<void>((r) => server.listen(join(dir, 'docker.sock'), r));
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

const event = (id: string, action: string, time: number) => JSON.stringify({
  Type: 'container', Action: action, status: action, id, time, timeNano: time * 1e9,
  Actor: { ID: id, Attributes: { 'kb.managed': 'true', 'kb.node': 'n1', 'kb.module': 'redis', 'kb.container': 'redis', name: 'n1_redis' } },
}) + '\n';

describe('DockerDriver against a scripted Engine API', () => {
  it('events: reconnects when the stream ends, resuming from the last event time, until unsubscribed', async () => {
    let n = 0;
    handler = (req, res) => {
      if (!req.url?.startsWith('/events')) { res.statusCode = 404; res.end(); return; }
      n += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      if (n === 1) { res.end(event('c1', 'die', 1000)); return; } // stream drops after one event
      res.write(event('c1', 'start', 1001)); // stays open
    };
    const driver = new DockerDriver({ socketPath: join(dir, 'docker.sock'), node: 'n1', eventsRetryMs: 20 });
    const got: DriverEvent[] = [];
    const stop = driver.events((e) => got.push(e), 'n1');
    const end = Date.now() + 5000;
    while (got.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    stop();
    expect(got).toEqual([
      { id: 'c1', action: 'die', node: 'n1', module: 'redis', container: 'redis' },
      { id: 'c1', action: 'start', node: 'n1', module: 'redis', container: 'redis' },
    ]);
    const urls = seen.filter((u) => u.startsWith('GET /events'));
    expect(urls.length).toBe(2);
    const q1 = new URL(`http://x${urls[0]!.slice(4)}`).searchParams;
    expect(JSON.parse(q1.get('filters') ?? '{}')).toEqual({
      type: ['container'], label: ['kb.managed=true', 'kb.node=n1'], event: ['die', 'stop', 'start', 'destroy'],
    });
    expect(q1.get('since')).toBeNull();
    expect(new URL(`http://x${urls[1]!.slice(4)}`).searchParams.get('since')).toBe('1000');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.filter((u) => u.startsWith('GET /events')).length).toBe(2); // no reconnect after stop()
  });

  it('ensureImage: an error inside the pull stream becomes "pull <ref> on <node>: <message>"', async () => {
    const digest = `sha256:${'c'.repeat(64)}`;
    handler = (req, res) => {
      if (req.url?.startsWith('/images/create')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(JSON.stringify({ status: `Pulling from kb/redis`, id: digest }) + '\n');
        res.end(JSON.stringify({ errorDetail: { message: 'unauthorized: authentication required' }, error: 'unauthorized: authentication required' }) + '\n');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'No such image' }));
    };
    const driver = new DockerDriver({ socketPath: join(dir, 'docker.sock'), node: 'redis-02' });
    const ref = `reg.example:5000/kb/redis:7.0@${digest}`;
    const progress: string[] = [];
    const err = (await driver.ensureImage(ref, (m) => progress.push(m)).catch((e: unknown) => e)) as DriverError;
    expect(err).toBeInstanceOf(DriverError);
    expect(err.message).toBe(`pull ${ref} on redis-02: unauthorized: authentication required`);
    expect(progress).toEqual([`${digest}: Pulling from kb/redis`]);
    // Looked up and pulled by digest only, never by tag.
    expect(decodeURIComponent(seen[0]!)).toBe(`GET /images/reg.example:5000/kb/redis@${digest}/json`);
    const create = new URL(`http://x${seen[1]!.slice(5)}`).searchParams;
    expect([create.get('fromImage'), create.get('tag')]).toEqual(['reg.example:5000/kb/redis', digest]);
  });
});
