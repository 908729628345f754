import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleState } from '../../proto/types.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import type { ContainerDriver, ManagedContainer } from '../../agent/driver/types.js';
import { judgeReplication, parseReplication, redisPassword, runChecks } from '../../agent/health/index.js';

const IMG = `127.0.0.1:5000/kb/redis@sha256:${'1'.repeat(64)}`;

function managed(logicalName: string, state: ManagedContainer['state'], node = 'n1'): ManagedContainer {
  return {
    id: `id-${logicalName}`, dockerName: `${node}_${logicalName}`, node, module: 'redis', logicalName,
    specHash: 'h', revision: 1, state, image: IMG, imageId: 'sha256:x',
  };
}

/** Only list(), exec() and logs() matter to health checks; everything else fails loudly. */
function stubDriver(containers: ManagedContainer[], exec: ContainerDriver['exec']): ContainerDriver {
  const no = (): never => { throw new Error('not used by health checks'); };
  return {
    ping: no, ensureImage: no, create: no, start: no, stop: no, remove: no, inspect: no, events: no, kill: no, pause: no, unpause: no,
    logs: async () => 'starting\n*** FATAL CONFIG FILE ERROR: Bad directive or wrong number of arguments\n',
    list: async () => containers, exec,
  };
}

function moduleState(over: Partial<ModuleState>): ModuleState {
  return {
    module: 'redis', revision: 1, specHash: 'h', files: [], healthChecks: [],
    containers: [container({ name: 'redis', image: IMG, order: 1 }), container({ name: 'redis-sentinel', image: IMG, order: 2 })],
    ...over,
  };
}

let closedPort: number;
let openPort: number;
let httpPort: number;
let tcpServer: ReturnType<typeof createServer>;
let httpServer: Server;

beforeAll(async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  tcpServer = createServer((s) => s.destroy());
  await new Promise<void>((r) => tcpServer.listen(0, '127.0.0.1', r));
  openPort = (tcpServer.address() as AddressInfo).port;
  httpServer = createHttpServer((req, res) => {
    res.statusCode = req.url === '/master' ? 200 : 503;
    res.end('x');
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  httpPort = (httpServer.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => tcpServer.close(() => r()));
  await new Promise<void>((r) => httpServer.close(() => r()));
});

describe('runChecks', () => {
  const ctx = (containers: ManagedContainer[], exec: ContainerDriver['exec'] = async () => ({ exitCode: 0, output: '' })) => ({
    node: 'n1', sharedEngine: true, log: pino({ level: 'silent' }), driver: stubDriver(containers, exec),
  });

  it('adds one "container <name> running" check per container, observed = engine state (+ last log line when down)', async () => {
    const res = await runChecks(ctx([managed('redis', 'running'), managed('redis-sentinel', 'exited')]), moduleState({}));
    expect(res).toEqual([
      { name: 'container redis running', ok: true, observed: 'running' },
      { name: 'container redis-sentinel running', ok: false, observed: 'exited; last log: *** FATAL CONFIG FILE ERROR: Bad directive or wrong number of arguments' },
    ]);
    const none = await runChecks(ctx([]), moduleState({}));
    expect(none.map((r) => r.observed)).toEqual(['missing', 'missing']);
  });

  it('tcp: ok on an open port, says what happened on a closed one', async () => {
    const res = await runChecks(ctx([managed('redis', 'running'), managed('redis-sentinel', 'running')]), moduleState({
      healthChecks: [
        healthCheck({ name: 'open', kind: 'tcp', host: '127.0.0.1', port: openPort }),
        healthCheck({ name: 'closed', kind: 'tcp', host: '127.0.0.1', port: closedPort }),
      ],
    }));
    expect(res.slice(2)).toEqual([
      { name: 'open', ok: true, observed: `connected to 127.0.0.1:${openPort}` },
      { name: 'closed', ok: false, observed: `connect 127.0.0.1:${closedPort}: ECONNREFUSED` },
    ]);
  });

  it('http: 2xx is ok, anything else reports the status', async () => {
    const res = await runChecks(ctx([]), moduleState({
      containers: [],
      healthChecks: [
        healthCheck({ name: 'master', kind: 'http', host: '127.0.0.1', port: httpPort, path: '/master' }),
        healthCheck({ name: 'replica', kind: 'http', host: '127.0.0.1', port: httpPort, path: 'replica' }),
        healthCheck({ name: 'down', kind: 'http', host: '127.0.0.1', port: closedPort, path: '/' }),
      ],
    }));
    expect(res).toEqual([
      { name: 'master', ok: true, observed: `GET http://127.0.0.1:${httpPort}/master: HTTP 200` },
      { name: 'replica', ok: false, observed: `GET http://127.0.0.1:${httpPort}/replica: HTTP 503` },
      { name: 'down', ok: false, observed: `GET http://127.0.0.1:${closedPort}/: ECONNREFUSED` },
    ]);
  });

  it('exec: runs in the named container; observed = exit code and last output line', async () => {
    const calls: string[] = [];
    const exec: ContainerDriver['exec'] = async (id, cmd) => {
      calls.push(`${id} ${cmd.join(' ')}`);
      return cmd[1] === 'ok' ? { exitCode: 0, output: 'a\nPONG\n' } : { exitCode: 1, output: 'Could not connect\n' };
    };
    const res = await runChecks(ctx([managed('redis', 'running'), managed('redis-sentinel', 'exited')], exec), moduleState({
      healthChecks: [
        healthCheck({ name: 'ping', kind: 'exec', container: 'redis', command: ['redis-cli', 'ok'] }),
        healthCheck({ name: 'bad', kind: 'exec', container: 'redis', command: ['redis-cli', 'bad'] }),
        healthCheck({ name: 'stopped', kind: 'exec', container: 'redis-sentinel', command: ['true'] }),
        healthCheck({ name: 'absent', kind: 'exec', container: 'nope', command: ['true'] }),
      ],
    }));
    expect(res.slice(2)).toEqual([
      { name: 'ping', ok: true, observed: 'exit 0: PONG' },
      { name: 'bad', ok: false, observed: 'exit 1: Could not connect' },
      { name: 'stopped', ok: false, observed: 'container redis-sentinel is exited' },
      { name: 'absent', ok: false, observed: 'container nope missing' },
    ]);
    expect(calls).toEqual(['id-redis redis-cli ok', 'id-redis redis-cli bad']);
  });

  it('bounds every check by its timeout and runs checks concurrently', async () => {
    const exec: ContainerDriver['exec'] = () => new Promise(() => undefined); // never answers
    const started = Date.now();
    const res = await runChecks(ctx([managed('redis', 'running')], exec), moduleState({
      containers: [container({ name: 'redis', image: IMG })],
      healthChecks: [
        healthCheck({ name: 'hang1', kind: 'exec', container: 'redis', command: ['sleep'], timeoutMs: 300 }),
        healthCheck({ name: 'hang2', kind: 'exec', container: 'redis', command: ['sleep'], timeoutMs: 300 }),
        healthCheck({ name: 'weird', kind: 'smoke-signal' }),
      ],
    }));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(res.slice(1)).toEqual([
      { name: 'hang1', ok: false, observed: 'no result within 300 ms' },
      { name: 'hang2', ok: false, observed: 'no result within 300 ms' },
      { name: 'weird', ok: false, observed: 'unknown check kind "smoke-signal"' },
    ]);
  });

  it('redis-role: an unreachable server is a failed check, not an exception', async () => {
    const res = await runChecks(ctx([]), moduleState({
      containers: [],
      healthChecks: [healthCheck({ name: 'role', kind: 'redis-role', host: '127.0.0.1', port: closedPort, expectRole: 'master', timeoutMs: 1000 })],
    }));
    expect(res[0]?.ok).toBe(false);
    expect(res[0]?.observed).toMatch(new RegExp(`^redis 127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`));
  });
});

describe('redis replication judgement', () => {
  const master = parseReplication('# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.1.2,port=6379,state=online\r\n');
  const replicaDown = parseReplication('# Replication\r\nrole:slave\r\nmaster_host:127.0.1.1\r\nmaster_port:6379\r\nmaster_link_status:down\r\n');

  it('master: wants role master and enough connected replicas', () => {
    expect(judgeReplication(master, { expectRole: 'master', minReplicas: 2 }))
      .toEqual({ ok: false, observed: 'role:master connected_slaves:1 (want >= 2)' });
    expect(judgeReplication(master, { expectRole: 'master', minReplicas: 1 }))
      .toEqual({ ok: true, observed: 'role:master connected_slaves:1' });
    expect(judgeReplication(replicaDown, { expectRole: 'master', minReplicas: 0 }))
      .toEqual({ ok: false, observed: 'role:slave master_link_status:down master 127.0.1.1:6379 (want role:master)' });
  });

  it('slave: wants the master link up', () => {
    expect(judgeReplication(replicaDown, { expectRole: 'slave', minReplicas: 0 }))
      .toEqual({ ok: false, observed: 'role:slave master_link_status:down master 127.0.1.1:6379 (want master_link_status:up)' });
    const up = { ...replicaDown, masterLinkStatus: 'up' };
    expect(judgeReplication(up, { expectRole: 'replica', minReplicas: 0 }))
      .toEqual({ ok: true, observed: 'role:slave master_link_status:up master 127.0.1.1:6379' });
    expect(judgeReplication(master, { expectRole: 'slave', minReplicas: 0 }).observed)
      .toBe('role:master connected_slaves:1 (want role:slave)');
  });

  it('takes the password from the checked container: env REDIS_PASSWORD, else --requirepass', () => {
    const state = moduleState({
      containers: [
        container({ name: 'redis', image: IMG, env: { REDIS_PASSWORD: 'p1' } }),
        container({ name: 'redis-sentinel', image: IMG, args: ['--requirepass', 'p2', '--port', '26379'] }),
        container({ name: 'plain', image: IMG }),
      ],
    });
    expect(redisPassword(state, { container: 'redis' })).toBe('p1');
    expect(redisPassword(state, { container: 'redis-sentinel' })).toBe('p2');
    expect(redisPassword(state, { container: 'plain' })).toBeUndefined();
    expect(redisPassword(state, { container: '' })).toBe('p1');
  });
});
