import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, SETTLE_CHECK_MS, SETTLE_HEALTH_MS } from '../../agent/agent.js';
import type { ExecResult } from '../../agent/driver/types.js';
import { kbV1, SERVER_OPTIONS, type AgentMessage, type CoordinatorMessage, type ModuleState } from '../../proto/index.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import { withSpecHash } from '../../shared/plan/hash.js';
import { FakeEngine } from '../helpers/fake-engine.js';

const IMG = `127.0.0.1:5000/kb/redis:7.0-kb1@sha256:${'1'.repeat(64)}`;
const state: ModuleState = withSpecHash({
  module: 'redis', revision: 1, containers: [container({ name: 'redis', image: IMG, args: ['--port', '6379'] })], files: [], healthChecks: [],
});

/** A coordinator that only says "report every 5 s", sends one state and records the health reports. */
async function coordinator(state: ModuleState): Promise<{ port: number; reports: { atMs: number; ok: boolean }[]; appliedAtMs: () => number | undefined; server: grpc.Server }> {
  const reports: { atMs: number; ok: boolean }[] = [];
  let appliedAtMs: number | undefined;
  const server = new grpc.Server(SERVER_OPTIONS);
  server.addService(kbV1().AgentService.service, {
    Session: (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>) => {
      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          call.write({ settings: { heartbeatIntervalMs: 5000, healthIntervalMs: 5000 } });
          call.write({ desired: state });
        } else if (msg.result?.ok) {
          appliedAtMs ??= Date.now();
        } else if (msg.health && appliedAtMs !== undefined) {
          const m = msg.health.modules.find((x) => x.module === 'redis' && x.revision === 1);
          if (m) reports.push({ atMs: Date.now(), ok: m.healthy && m.converged });
        }
      });
      call.on('end', () => call.end());
    },
    Renew: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'test' }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { port, reports, appliedAtMs: () => appliedAtMs, server };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** Starts an agent on `engine` against coordinator `c` and waits until it applied the state. */
async function startAgent(c: Awaited<ReturnType<typeof coordinator>>, dir: string, engine: FakeEngine): Promise<void> {
  const agent = new Agent({
    node: 'redis-01', coordinators: [`127.0.0.1:${c.port}`], stateDir: join(dir, 'state'), hostRoot: join(dir, 'root'), plaintext: true,
    reconcileIntervalMs: 60_000,
  }, engine, pino({ level: 'silent' }));
  cleanup.push(async () => {
    await agent.stop();
    c.server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  await agent.start(grpc.credentials.createInsecure());
  for (let i = 0; i < 100 && c.appliedAtMs() === undefined; i++) await new Promise((r) => setTimeout(r, 50));
  expect(c.appliedAtMs()).toBeDefined();
}

describe('agent health reports after an apply', () => {
  it(`re-checks every ${SETTLE_HEALTH_MS} ms after applying, instead of waiting for the 5 s interval`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-settle-'));
    const c = await coordinator(state);
    await startAgent(c, dir, new FakeEngine());
    await new Promise((r) => setTimeout(r, 3000));
    const within = c.reports.filter((r) => r.atMs - c.appliedAtMs()! <= 3000);
    // The 5 s interval alone would give at most one report in these 3 s.
    expect(within.length).toBeGreaterThanOrEqual(4);
    expect(within.every((r) => r.ok)).toBe(true);
  }, 20_000);

  it(`while not healthy yet, checks every ${SETTLE_CHECK_MS} ms but sends "still not healthy" at most every ${SETTLE_HEALTH_MS} ms`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-settle-'));
    const gated: ModuleState = withSpecHash({ ...state, healthChecks: [healthCheck({ name: 'ready', kind: 'exec', container: 'redis', command: ['ready'] })] });
    const c = await coordinator(gated);
    // The container answers its exec check "not ready" until `ready` is set.
    let ready = false;
    let checksBeforeReady = 0;
    const engine = new (class extends FakeEngine {
      override async exec(): Promise<ExecResult> {
        if (!ready) checksBeforeReady++;
        return ready ? { exitCode: 0, output: '' } : { exitCode: 1, output: 'not ready' };
      }
    })();
    await startAgent(c, dir, engine);
    await new Promise((r) => setTimeout(r, 2000));
    const unhealthy = c.reports.filter((r) => !r.ok);
    const checks = checksBeforeReady;
    ready = true;
    const healthy = await (async () => {
      for (let i = 0; i < 100; i++) {
        const h = c.reports.find((r) => r.ok);
        if (h) return h;
        await new Promise((r) => setTimeout(r, 20));
      }
      return undefined;
    })();
    expect(healthy, 'a healthy report once the check passes').toBeDefined();
    // Held: consecutive "not healthy" reports are SETTLE_HEALTH_MS apart at least (a little less for timer rounding)...
    expect(unhealthy.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < unhealthy.length; i++) expect(unhealthy[i]!.atMs - unhealthy[i - 1]!.atMs).toBeGreaterThanOrEqual(SETTLE_HEALTH_MS - 50);
    // ...while the checks themselves ran more often than reports were sent.
    expect(checks).toBeGreaterThan(unhealthy.length);
  }, 20_000);
});
