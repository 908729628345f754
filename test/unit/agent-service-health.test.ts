import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { AgentMessage, ContainerStatus, CoordinatorMessage, HealthReport } from '../../proto/types.js';
import { agentSessionHandler } from '../../coordinator/server/agent-service.js';
import { SessionRegistry } from '../../coordinator/sessions.js';
import type { NodeModuleRecord, NodeRecord, Store } from '../../coordinator/store/types.js';
import type { Inventory } from '../../shared/inventory/index.js';

// How an agent's health reports reach the Store (what the leader's health gates read when
// coordinators run on etcd): a write that failed must not make later identical reports
// look already written, and an older report must never land after a newer one.

type Call = grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(ok: boolean): HealthReport {
  return {
    facts: null,
    observedAtMs: 0,
    containers: [],
    modules: [{ module: 'redis', revision: 4, specHash: 'h', healthy: ok, converged: true, checks: [{ name: 'redis-port', ok, observed: ok ? 'open' : 'ECONNREFUSED' }] }],
  };
}

/** A Store with just what the session handler uses; putNodeModule is scripted per call. */
function fakeStore(put: (rec: NodeModuleRecord, n: number) => Promise<void>, upsert: (n: NodeRecord, call: number) => Promise<void> = async () => undefined) {
  const nodes = new Map<string, NodeRecord>();
  const written: NodeModuleRecord[] = [];
  const upserted: NodeRecord[] = [];
  let calls = 0;
  let upserts = 0;
  const store = {
    getNode: async (name: string) => nodes.get(name),
    upsertNode: async (n: NodeRecord) => {
      await upsert(n, ++upserts);
      nodes.set(n.name, n);
      upserted.push(n);
    },
    listAssignments: async () => [],
    getRevision: async () => undefined,
    putNodeModule: async (rec: NodeModuleRecord) => {
      await put(rec, ++calls);
      written.push(rec);
    },
  } as unknown as Store;
  return { store, written, upserted };
}

function session(store: Store, nodeRefreshBatchMs?: number): { call: Call; send: (m: AgentMessage) => void } {
  const call = Object.assign(new EventEmitter(), {
    getPeer: () => '127.0.0.1:1',
    write: () => true,
    end: () => undefined,
  }) as unknown as Call;
  agentSessionHandler({
    store, sessions: new SessionRegistry(), log: pino({ level: 'silent' }),
    inventory: () => ({ file: 'servers.tsv', servers: [{ hostname: 'redis-01' }] }) as unknown as Inventory,
    heartbeatIntervalMs: 5000, healthIntervalMs: 5000, authenticate: async () => undefined, nodeRefreshBatchMs,
  })(call);
  return { call, send: (m) => call.emit('data', m) };
}

async function hello(send: (m: AgentMessage) => void): Promise<void> {
  send({ hello: { nodeName: 'redis-01', agentVersion: 't', desired: [] } } as AgentMessage);
  await sleep(20);
}

describe('agent session: health reports to the store', () => {
  it('after a failed write, the same report is written again when it comes next', async () => {
    const { store, written } = fakeStore(async (_rec, n) => {
      if (n === 1) throw new Error('etcd unreachable (write): leader changed');
    });
    const { send } = session(store);
    await hello(send);
    send({ health: report(true) } as AgentMessage);
    await sleep(20);
    expect(written).toHaveLength(0);
    send({ health: report(true) } as AgentMessage);
    await sleep(20);
    expect(written.map((r) => r.healthy)).toEqual([true]);
    // Written once: an identical third report changes nothing.
    send({ health: report(true) } as AgentMessage);
    await sleep(20);
    expect(written).toHaveLength(1);
  });

  it('reports are written in order, one at a time, the newest last: a slow older write never lands after a newer one', async () => {
    const { store, written } = fakeStore(async (rec) => {
      // The failing report's write is slow (etcd electing a leader), the next one is fast.
      if (!rec.healthy) await sleep(80);
    });
    const { send } = session(store);
    await hello(send);
    send({ health: report(false) } as AgentMessage);
    await sleep(10);
    send({ health: report(true) } as AgentMessage);
    await sleep(150);
    expect(written.map((r) => r.healthy)).toEqual([false, true]);
  });

  it('while a write is in flight, only the newest of the reports that arrived meanwhile is written next', async () => {
    const { store, written } = fakeStore(async () => { await sleep(50); });
    const { send } = session(store);
    await hello(send);
    send({ health: report(false) } as AgentMessage);
    await sleep(5);
    send({ health: report(true) } as AgentMessage);
    send({ health: report(false) } as AgentMessage);
    send({ health: report(true) } as AgentMessage);
    await sleep(200);
    expect(written.map((r) => r.healthy)).toEqual([false, true]);
  });
});

describe('agent session: node-record refreshes', () => {
  const container: ContainerStatus = { module: 'redis', name: 'redis', id: 'c1', image: 'i', imageId: 'sha256:1', state: 'running', startedAt: 's' };

  it('the periodic refresh is not waited for: the module record is written first, and a failed refresh is retried at the next report', async () => {
    const { store, written, upserted } = fakeStore(async () => undefined, async (_n, call) => {
      if (call === 2) throw new Error('etcd unreachable (write): leader changed');
    });
    const { send } = session(store, 40);
    await hello(send);
    expect(upserted).toHaveLength(1); // the hello's write
    send({ health: report(true) } as AgentMessage);
    await sleep(10);
    expect(written).toHaveLength(1);
    expect(upserted).toHaveLength(1); // the refresh waits for its batch
    await sleep(60);
    expect(upserted).toHaveLength(1); // its write failed
    send({ health: report(true) } as AgentMessage);
    await sleep(60);
    expect(upserted).toHaveLength(2); // retried at the next report
    expect(upserted[1]).toMatchObject({ name: 'redis-01', agentVersion: 't' });
    expect(upserted[1]!.firstSeenMs).toBe(upserted[0]!.firstSeenMs);
    send({ health: report(true) } as AgentMessage);
    await sleep(60);
    expect(upserted).toHaveLength(2); // not again within 30 s
    expect(written).toHaveLength(1);
  });

  it('containers that changed are written at once and cancel the waiting refresh, which never lands after them', async () => {
    const { store, upserted } = fakeStore(async () => undefined);
    const { send } = session(store, 100);
    await hello(send);
    send({ health: report(true) } as AgentMessage); // no containers: a refresh is queued
    await sleep(10);
    send({ health: { ...report(true), containers: [container] } } as AgentMessage);
    await sleep(20);
    expect(upserted).toHaveLength(2);
    expect((upserted[1]!.containers ?? []).map((c) => c.id)).toEqual(['c1']);
    await sleep(150);
    expect(upserted).toHaveLength(2);
  });
});
