import { describe, expect, it } from 'vitest';
import { kbV1 } from '../../proto/index.js';

describe('kb.v1 contract', () => {
  it('loads both services with their methods', () => {
    const v1 = kbV1();
    expect(Object.keys(v1.AgentService.service)).toEqual(['Session', 'Renew']);
    expect(Object.keys(v1.ControlService.service).sort()).toEqual([
      'CoordinatorDrill', 'CoordinatorStatus', 'CreateToken', 'Drill', 'Health', 'ImportSecrets', 'ListNodes', 'ListSecrets', 'ListTokens', 'Plan',
      'RemoveToken', 'Rollout', 'RolloutStatus', 'RotateSecret',
    ]);
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

  it('round-trips the token and renewal messages', () => {
    const create = kbV1().ControlService.service.CreateToken!;
    const back = create.responseDeserialize(create.responseSerialize({
      token: 'K10ab::id.secret', installCommand: 'curl ...',
      info: { id: 'abc123', createdMs: 1, expiresMs: 2, uses: 3, used: 1, node: 'redis-01', state: 'valid', description: 'd', usedBy: ['redis-01'] },
    })) as Record<string, any>;
    expect(back.info.usedBy).toEqual(['redis-01']);
    expect(back.info.expiresMs).toBe(2);
    const renew = kbV1().AgentService.service.Renew!;
    const r = renew.responseDeserialize(renew.responseSerialize({ certificatePem: 'C', caPem: 'A', notAfterMs: 5, serial: 'ff' })) as Record<string, any>;
    expect(r).toEqual({ certificatePem: 'C', caPem: 'A', notAfterMs: 5, serial: 'ff' });
  });

  it('round-trips a follower spec, health-check Sentinel fields and container actions', () => {
    const session = kbV1().AgentService.service.Session!;
    const follower = {
      masterName: 'kb-redis-master', sentinels: ['127.0.2.1:26379', '127.0.2.2:26379'], runtimeSocket: '/run/a.sock',
      backend: 'be_redis_master', server: 'redis-master', serverStateFile: '/run/state', reconcileIntervalMs: 2000, timeoutMs: 500,
    };
    const down = session.responseDeserialize(session.responseSerialize({
      desired: {
        module: 'haproxy', revision: 1, specHash: 'h', containers: [], files: [],
        healthChecks: [{ name: 's', kind: 'redis-sentinel', sentinels: ['127.0.2.1:26379'], masterName: 'kb-redis-master', minSentinels: 3 }],
        redisFollower: follower,
      },
    })) as Record<string, any>;
    expect(down.desired.redisFollower).toEqual({ ...follower, credentialsFile: '' });
    expect(down.desired.healthChecks[0]).toMatchObject({ sentinels: ['127.0.2.1:26379'], masterName: 'kb-redis-master', minSentinels: 3 });
    const plain = session.responseDeserialize(session.responseSerialize({ desired: { module: 'redis', revision: 1 } })) as Record<string, any>;
    expect(plain.desired.redisFollower).toBeNull();
    const action = session.responseDeserialize(session.responseSerialize({ containerAction: { id: 'a1', module: 'redis', container: 'redis', action: 'pause', holdMs: 1000 } })) as Record<string, any>;
    expect(action).toMatchObject({ msg: 'containerAction', containerAction: { id: 'a1', action: 'pause', holdMs: 1000 } });
    const up = session.requestDeserialize(session.requestSerialize({ containerActionResult: { id: 'a1', ok: true, error: '', doneAtMs: 5, state: 'paused' } })) as Record<string, any>;
    expect(up).toMatchObject({ msg: 'containerActionResult', containerActionResult: { id: 'a1', ok: true, doneAtMs: 5, state: 'paused' } });
  });

  it('round-trips a drill report', () => {
    const drill = kbV1().ControlService.service.Drill!;
    const back = drill.responseDeserialize(drill.responseSerialize({
      report: { drill: 'redis-failover', mode: 'stop', ok: true, promotionMs: 5800, switchMs: 40, writeOutageMs: 5900, writesLost: 0, timeline: [{ atMs: 1, source: 'drill', what: 'x' }] },
    })) as Record<string, any>;
    expect(back.report).toMatchObject({ drill: 'redis-failover', promotionMs: 5800, switchMs: 40, writeOutageMs: 5900, writesLost: 0, timeline: [{ atMs: 1, source: 'drill', what: 'x' }] });
  });

  it('carries secret values beside a desired state (outside the oneof), and references inside it', () => {
    const session = kbV1().AgentService.service.Session!;
    const msg = {
      desired: {
        module: 'redis', revision: 2, specHash: 'h', containers: [], files: [], healthChecks: [],
        secrets: [{ name: 'redis', version: 2, file: 'redis.env' }],
        secretFiles: [{ file: 'redis-server.conf', mode: 0o600, uid: 999, gid: 999, template: 'masterauth {{redis redis@2 REDIS_PASSWORD}}' }],
      },
      secretValues: [{ name: 'redis', version: 2, vars: { REDIS_PASSWORD: 'p"$`\\' } }],
    };
    const back = session.responseDeserialize(session.responseSerialize(msg)) as Record<string, any>;
    expect(back.msg).toBe('desired');
    expect(back.desired.secrets).toEqual([{ name: 'redis', version: 2, file: 'redis.env' }]);
    expect(back.desired.secretFiles[0].uid).toBe(999);
    expect(back.secretValues).toEqual([{ name: 'redis', version: 2, vars: { REDIS_PASSWORD: 'p"$`\\' } }]);
    const req = { secretsRequest: { module: 'redis', revision: 2, specHash: 'h', reason: 'redis.env missing' } };
    const up = session.requestDeserialize(session.requestSerialize(req)) as Record<string, any>;
    expect(up.msg).toBe('secretsRequest');
    expect(up.secretsRequest.reason).toBe('redis.env missing');
  });
});
