import { describe, expect, it } from 'vitest';
import { planAtStart } from '../../coordinator/plan-at-start.js';
import { loadInventory } from '../../shared/inventory/index.js';
import { parseVersions } from '../../shared/versions/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 'versions.yaml');

function logger() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    info: (obj: Record<string, unknown>, msg: string) => { lines.push({ level: 'info', obj, msg }); },
    warn: (obj: Record<string, unknown>, msg: string) => { lines.push({ level: 'warn', obj, msg }); },
  };
}

describe('planning at start', () => {
  it('plans every module of the real inventory (no registry asked) and says so in one line', async () => {
    const log = logger();
    const res = await planAtStart({ inventory: loadInventory(sharedFixture('servers.tsv')), versions, settings: {} }, log as never);
    expect(res.map(({ module, nodes }) => ({ module, nodes }))).toEqual([{ module: 'redis', nodes: 3 }, { module: 'haproxy', nodes: 2 }]);
    // Each revision was also encoded as the store would hold it (small ones as plain JSON).
    for (const r of res) expect(r.revisionBytes).toBeGreaterThan(1000);
    expect(res.every((r) => r.error === undefined)).toBe(true);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]!.msg).toBe('inputs planned at start: redis on 3 nodes, haproxy on 2 nodes');
    expect(log.lines[0]!.obj.modules).toEqual({ redis: 3, haproxy: 2 });
    expect(log.lines[0]!.obj.revisionBytes).toEqual({ redis: res[0]!.revisionBytes, haproxy: res[1]!.revisionBytes });
  });

  it('names the file and field of a module that cannot be planned, and still plans the others', async () => {
    const log = logger();
    const settings = { haproxy: { file: '/etc/kb/modules.yaml', values: { bind: '10.0.0.1' }, nodes: {} } };
    const res = await planAtStart({ inventory: loadInventory(sharedFixture('servers.tsv')), versions, settings }, log as never);
    expect(res[0]).toMatchObject({ module: 'redis', nodes: 3 });
    expect(res[1]).toMatchObject({ module: 'haproxy', nodes: 0 });
    expect(res[1]!.error).toMatch(/\/etc\/kb\/modules\.yaml.*bind.*must be "any"/s);
    const warn = log.lines.find((l) => l.level === 'warn')!;
    expect(warn.msg).toBe('module haproxy cannot be planned from the current inputs; a rollout of it will be refused until they are fixed');
    expect(log.lines.at(-1)!.msg).toBe('inputs planned at start: redis on 3 nodes');
  });
});
