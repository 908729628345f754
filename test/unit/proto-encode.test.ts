import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import type { ImageResolver } from '../../coordinator/images/resolve.js';
import { getModule } from '../../coordinator/modules/index.js';
import { computeDesired } from '../../coordinator/planner.js';
import descriptor from '../../proto/gen/kb.v1.json' with { type: 'json' };
import { kbV1, type AgentMessage, type CoordinatorMessage } from '../../proto/index.js';
import { loadInventory } from '../../shared/inventory/index.js';
import { parseVersions } from '../../shared/versions/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

// proto-loader's own way: fromObject (a coercing copy), then encode. kb's serializers skip the copy.
const { ['//']: _generated, ...json } = descriptor as Record<string, unknown>;
const root = protobuf.Root.fromJSON(json as protobuf.INamespace);
const viaFromObject = (type: string, value: object) => {
  const t = root.lookupType(type);
  return Buffer.from(t.encode(t.fromObject(value)).finish());
};

const resolver: ImageResolver = { resolve: async (ref) => `${ref}@sha256:${'a'.repeat(64)}` };
const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 'versions.yaml');

describe('kb.v1 serializers encode message objects directly', () => {
  it('give the bytes of fromObject + encode for every desired state of the real inventory, with credentials', async () => {
    const inventory = loadInventory(sharedFixture('servers.tsv'));
    const session = kbV1().AgentService.service.Session!;
    let checked = 0;
    for (const module of ['redis', 'haproxy']) {
      const d = await computeDesired(getModule(module), { inventory, versions, settings: {} }, resolver, { redis: { active: 2, accepted: [1, 2] } });
      for (const state of Object.values(d.states)) {
        const msg: CoordinatorMessage = { desired: { ...state, revision: 12 }, secretValues: [{ name: 'redis', version: 2, vars: { REDIS_PASSWORD: 'p'.repeat(40) } }] };
        const bytes = session.responseSerialize(msg);
        expect(bytes.equals(viaFromObject('kb.v1.CoordinatorMessage', msg)), `${module} on ${state.containers[0]?.name}`).toBe(true);
        const back = session.responseDeserialize(bytes) as CoordinatorMessage;
        expect(back.desired).toEqual(expect.objectContaining({ module, revision: 12, specHash: state.specHash }));
        expect(back.desired!.files.map((f) => f.content.toString('base64'))).toEqual(state.files.map((f) => f.content.toString('base64')));
        checked++;
      }
    }
    expect(checked).toBe(5); // 3 Redis nodes and 2 internal HAProxy nodes
  });

  it('give the same bytes for what agents send (hello, health with int64 facts, result) and for control replies', () => {
    const session = kbV1().AgentService.service.Session!;
    const up: AgentMessage[] = [
      { hello: { nodeName: 'redis-01', agentVersion: '1.2.3', desired: [{ module: 'redis', revision: 3, specHash: 'h' }] } },
      {
        health: {
          facts: { cpuPercent: 12.5, memTotalBytes: 24 * 2 ** 30, memUsedBytes: 5 * 2 ** 30 + 7, diskTotalBytes: 2 ** 40, diskUsedBytes: 0, dockerVersion: '20.10', uptimeS: 86_400 * 400, os: 'Debian 12' },
          modules: [{ module: 'redis', revision: 3, specHash: 'h', healthy: false, converged: true, checks: [{ name: 'role', ok: false, observed: 'slave' }] }],
          containers: [], observedAtMs: Date.UTC(2026, 10, 28),
        },
      },
      { result: { module: 'redis', revision: 3, specHash: 'h', ok: false, error: 'pull failed', changed: false, actions: ['create redis'] } },
    ];
    for (const m of up) expect(session.requestSerialize(m).equals(viaFromObject('kb.v1.AgentMessage', m))).toBe(true);
    const back = session.requestDeserialize(session.requestSerialize(up[1]!)) as AgentMessage;
    expect(back.health!.facts!.memTotalBytes).toBe(24 * 2 ** 30);
    expect(back.health!.observedAtMs).toBe(Date.UTC(2026, 10, 28));
    const create = kbV1().ControlService.service.CreateToken!;
    const reply = { token: 'K10ab::id.secret', installCommand: 'curl ...', info: { id: 'a', createdMs: 1, expiresMs: 2, uses: 3, used: 1, node: '', state: 'valid', description: '', usedBy: [] } };
    expect(create.responseSerialize(reply).equals(viaFromObject('kb.v1.CreateTokenResponse', reply))).toBe(true);
  });

  it('run no fromObject copy: a value fromObject would refuse is encoded as protobufjs sees it (ADR 0020)', () => {
    const msg = { desired: 'not a ModuleState' } as never;
    // proto-loader's serializer goes through fromObject, which checks the nested field's type.
    expect(() => viaFromObject('kb.v1.CoordinatorMessage', msg)).toThrow(/desired: object expected/);
    // kb's encodes directly (TypeScript types every message kb builds; proto/types.ts).
    expect(() => kbV1().AgentService.service.Session!.responseSerialize(msg)).not.toThrow();
  });

  it('refuses an array where a message is expected, as proto-loader does', () => {
    expect(() => kbV1().AgentService.service.Session!.responseSerialize([] as never)).toThrow(/expected object with CoordinatorMessage structure, got array/);
  });
});
