import { describe, expect, it } from 'vitest';
import { kbV1 } from '../../proto/index.js';

describe('kb.v1 contract', () => {
  it('loads both services with their methods', () => {
    const v1 = kbV1();
    expect(Object.keys(v1.AgentService.service)).toEqual(['Session']);
    expect(Object.keys(v1.ControlService.service).sort()).toEqual(['CoordinatorStatus', 'Drill', 'ListNodes', 'Plan', 'Rollout', 'RolloutStatus']);
  });

  it('round-trips a desired module state through the real codec', () => {
    const session = kbV1().AgentService.service.Session!;
    const msg = {
      desired: {
        module: 'redis', revision: 7, specHash: 'abc',
        containers: [{ name: 'redis', image: 'r@sha256:1', args: ['--port', '6379'], env: { A: 'b' }, volumes: [{ hostPath: '/a', containerPath: '/b', readOnly: true }], networkMode: 'host', restartPolicy: 'unless-stopped', order: 1, entrypoint: '' }],
        files: [{ path: '/etc/x', mode: 0o644, content: Buffer.from('hi') }],
        healthChecks: [{ name: 'role', kind: 'redis-role', host: '127.0.1.1', port: 6379, expectRole: 'master', minReplicas: 0, timeoutMs: 2000 }],
      },
    };
    const bytes = session.responseSerialize(msg);
    const back = session.responseDeserialize(bytes) as Record<string, any>;
    expect(back.msg).toBe('desired');
    expect(back.desired.revision).toBe(7);
    expect(back.desired.containers[0].env).toEqual({ A: 'b' });
    expect(back.desired.files[0].content.toString()).toBe('hi');
    expect(back.desired.healthChecks[0].expectRole).toBe('master');
  });
});
