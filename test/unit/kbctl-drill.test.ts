import { describe, expect, it } from 'vitest';
import { appliedTwice, formatFailoverReport, stoppedContainers, type FailoverReport } from '../../coordinator/kbctl/drill.js';
import type { ContainerStatus, NodeInfo, RolloutEvent } from '../../proto/types.js';

const c = (name: string, id: string, state: string, startedAt: string, module = 'redis'): ContainerStatus => ({ module, name, id, state, image: 'r@sha256:1', imageId: 'sha256:2', startedAt });
const node = (name: string, containers: ContainerStatus[]): NodeInfo => ({
  name, role: 'redis', subrole: '', ip: '', status: 'Ready', agentVersion: '1', modules: [], facts: null, lastSeenMs: 0, connected: true,
  certSerial: '', certNotAfterMs: 0, containers, coordinator: 'c1 127.0.0.1:7443', connectedMs: 0,
});

describe('kbctl drill coordinator-failover: what counts as a stopped container', () => {
  const before = [
    node('redis-01', [c('redis', 'a', 'running', 't1')]),
    node('redis-02', [c('redis', 'b', 'running', 't1'), c('sidecar', 's', 'running', 't1', 'other')]),
    node('redis-03', [c('redis', 'c', 'running', 't1'), c('old', 'o', 'exited', 't0')]),
  ];

  it('nothing, when every container runs as before or was replaced on a node the rollout was asked to change', () => {
    const after = [
      node('redis-01', [c('redis', 'a2', 'running', 't5')]),
      node('redis-02', [c('redis', 'b', 'running', 't1'), c('sidecar', 's', 'running', 't1', 'other')]),
      node('redis-03', [c('redis', 'c', 'running', 't1')]),
    ];
    expect(stoppedContainers(before, after, new Set(['redis-01/redis']))).toEqual([]);
  });

  it('a container gone, not running, restarted in place, or replaced where no rollout asked', () => {
    const after = [
      node('redis-01', [c('redis', 'a', 'running', 't9')]),
      node('redis-02', [c('redis', 'b', 'exited', 't1'), c('sidecar', 's2', 'running', 't5', 'other')]),
      node('redis-03', []),
    ];
    expect(stoppedContainers(before, after, new Set(['redis-02/redis']))).toEqual([
      { node: 'redis-01', module: 'redis', name: 'redis', what: 'restarted (started t1 -> t9)' },
      { node: 'redis-02', module: 'redis', name: 'redis', what: 'state exited' },
      { node: 'redis-02', module: 'other', name: 'sidecar', what: 'replaced without a rollout asking' },
      { node: 'redis-03', module: 'redis', name: 'redis', what: 'missing' },
    ]);
  });

  it('finds a revision applied twice on a node from the event log', () => {
    const e = (node: string, revision: number, message: string, kind = 'node-applied'): RolloutEvent => ({ id: 0, rolloutId: 'r', atMs: 0, node, kind, message, check: '', observed: '', revision });
    expect(appliedTwice([e('redis-01', 4, 'applied: replace redis'), e('redis-01', 4, 'already at this revision: nothing to do'), e('redis-02', 4, 'applied: x')])).toEqual([]);
    expect(appliedTwice([e('redis-01', 4, 'applied: replace redis'), e('redis-01', 4, 'applied: replace redis'), e('redis-01', 5, 'applied: x')])).toEqual(['redis-01@4']);
  });

  it('prints one line per question the drill answers', () => {
    const report: FailoverReport = {
      mode: 'kill',
      isolated: null,
      killed: { id: 'x', name: 'c1', address: '127.0.0.1:1', pid: 7, term: 3, killAtMs: Date.UTC(2024, 0, 1) },
      newLeader: { id: 'y', name: 'c2', address: '127.0.0.1:2', term: 9 },
      newLeaderMs: 4820,
      agents: { total: 3, onKilledLeader: 3, reconnectedMs: 271, notReconnected: [] },
      containers: { checked: 3, stopped: [] },
      rollout: { id: 'redis-5-ab', module: 'redis', revision: 5, state: 'succeeded', completed: true, appliedTwice: [] },
      pass: true,
      problems: [],
    };
    expect(formatFailoverReport(report)).toEqual([
      'killed leader:        c1 at 127.0.0.1:1 (pid 7, term 3) at 2024-01-01T00:00:00.000Z',
      'new leader:           c2 at 127.0.0.1:2 (term 9) after 4.82 s',
      'agents reconnected:   3/3 after 0.27 s (3 were on the killed leader)',
      'containers stopped:   0 of 3 managed containers',
      'in-flight rollout:    redis-5-ab completed at revision 5; no revision applied twice',
      'result:               PASS',
    ]);

    const isolated: FailoverReport = {
      ...report, mode: 'isolate',
      isolated: { isolateMs: 8000, leaseTtlMs: 5000, steppedDownMs: 3512, rejoinedMs: 9100, lastWriteRevision: 41, role: 'follower' },
    };
    const lines = formatFailoverReport(isolated);
    expect(lines[0]).toBe('isolated leader:      c1 at 127.0.0.1:1 (pid 7, term 3) cut off from etcd at 2024-01-01T00:00:00.000Z for 8.00 s');
    expect(lines).toContain('old leader:           stepped down after 3.51 s (lease TTL 5.00 s); back as follower after 9.10 s; last write landed at revision 41');
    expect(lines.at(-1)).toBe('result:               PASS');
  });
});
