import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModuleState } from '../../proto/types.js';
import { container } from '../../shared/plan/builders.js';
import { parseEndpoint } from '../../shared/redis/endpoint.js';
import { describeTally, failoverReadiness, flatToRecord, parseSwitchMaster, tally } from '../../shared/redis/sentinel.js';
import { measureFailover, type Ack } from '../../shared/redis/writer.js';
import { ContainerActions } from '../../agent/actions.js';
import { isReady, parseServersState, routedTo } from '../../agent/follower/runtime-api.js';
import { reconcileModule, type ReconcileContext } from '../../agent/reconcile/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';

describe('Sentinel majority (the split-brain guard)', () => {
  const s = (n: number) => `127.0.1.${n}:26379`;

  it('agrees on a master only with a majority of the configured Sentinels', () => {
    const t = tally([{ sentinel: s(1), master: 'B' }, { sentinel: s(2), master: 'B' }, { sentinel: s(3), master: 'C' }], 3);
    expect(t).toMatchObject({ needed: 2, agreed: 'B', agreedBy: [s(1), s(2)] });
    expect(describeTally(t)).toBe(`B agreed by 2/3 sentinels (${s(3)} says C)`);
  });

  it('never decides on one voice, whatever the others do (silent, disagreeing, not asked)', () => {
    expect(tally([{ sentinel: s(1), master: 'B' }], 3).agreed).toBeUndefined();
    expect(tally([{ sentinel: s(1), master: 'B' }, { sentinel: s(2), error: 'ETIMEDOUT' }, { sentinel: s(3), error: 'ECONNREFUSED' }], 3).agreed).toBeUndefined();
    const split = tally([{ sentinel: s(1), master: 'A' }, { sentinel: s(2), master: 'B' }, { sentinel: s(3), error: 'x' }], 3);
    expect(split.agreed).toBeUndefined();
    expect(describeTally(split)).toBe(`no master named by 2/3 sentinels (A by ${s(1)}; B by ${s(2)}; ${s(3)}: no answer)`);
    // A majority of those who answered is not enough: the majority is of the configured set.
    expect(tally([{ sentinel: s(1), master: 'B' }, { sentinel: s(2), master: 'B' }], 5).agreed).toBeUndefined();
  });

  it('reads +switch-master messages and SENTINEL MASTER replies', () => {
    expect(parseSwitchMaster('kb-redis-master 127.0.1.1 6379 127.0.1.2 6379')).toEqual({ name: 'kb-redis-master', from: '127.0.1.1:6379', to: '127.0.1.2:6379' });
    expect(parseSwitchMaster('garbage')).toBeUndefined();
    expect(flatToRecord(['flags', 'master', 'num-other-sentinels', '2'])).toEqual({ flags: 'master', 'num-other-sentinels': '2' });
    expect(parseEndpoint('127.0.1.1:26379')).toEqual({ host: '127.0.1.1', port: 26379 });
    expect(() => parseEndpoint('127.0.1.1')).toThrow('"127.0.1.1" is not host:port');
    expect(() => parseEndpoint('h:70000')).toThrow('is not host:port');
  });
});

describe('HAProxy Runtime API: show servers state', () => {
  const text = [
    '1',
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port',
    '3 be_redis_master 1 redis-master 127.0.2.2 2 4 1 1 3 1 0 2 0 0 0 0 redis-master.kb.invalid 6379 - 0 0 - - 0',
    '',
  ].join('\n');

  it('finds the server by backend and name, by header column', () => {
    const s = parseServersState(text, 'be_redis_master', 'redis-master')!;
    expect(s).toMatchObject({ addr: '127.0.2.2', port: 6379, opState: 2, adminState: 4 });
    expect(routedTo(s)).toBe('127.0.2.2:6379');
    expect(parseServersState(text, 'be_other', 'redis-master')).toBeUndefined();
  });

  it('is ready unless in maintenance (forced, inherited, resolution) or drain; the config-maint bit alone is not maintenance', () => {
    const base = parseServersState(text, 'be_redis_master', 'redis-master')!;
    expect(isReady(base)).toBe(true); // admin state 4: started "disabled", then set ready
    for (const bit of [0x01, 0x02, 0x08, 0x10, 0x20]) expect(isReady({ ...base, adminState: bit | 4 }), `bit ${bit}`).toBe(false);
  });
});

describe('failover measures from acknowledged writes', () => {
  const acks: Ack[] = [
    { seq: 1, sentMs: 1000, ackMs: 1001, server: 'A' },
    { seq: 2, sentMs: 1005, ackMs: 1006, server: 'A' },
    // failure at 1010; promotion; switch-master at 7000
    { seq: 3, sentMs: 7010, ackMs: 7060, server: 'B' },
    { seq: 4, sentMs: 7065, ackMs: 7066, server: 'B' },
  ];

  it('outage = last ack by the old master -> first by the new; switch = +switch-master -> first ack by the new', () => {
    const m = measureFailover(acks, { oldServer: 'A', newServer: 'B', failedAtMs: 1010, switchAtMs: 7000 });
    expect(m).toMatchObject({ outageMs: 6054, switchMs: 60, ackedByOldAfterSwitch: 0 });
    expect(m.lastAckOld?.seq).toBe(2);
    expect(m.firstAckNew?.seq).toBe(3);
  });

  it('counts writes the old master acknowledged after the switch (split brain as a client sees it)', () => {
    const m = measureFailover([...acks, { seq: 5, sentMs: 8000, ackMs: 8001, server: 'A' }], { oldServer: 'A', newServer: 'B', failedAtMs: 1010, switchAtMs: 7000 });
    expect(m.ackedByOldAfterSwitch).toBe(1);
  });

  it('leaves the measures undefined when the new master never acknowledged', () => {
    const m = measureFailover(acks.slice(0, 2), { oldServer: 'A', newServer: 'B', failedAtMs: 1010 });
    expect(m).toMatchObject({ outageMs: undefined, switchMs: undefined, firstAckNew: undefined });
  });
});

describe('container actions (drills) and holds', () => {
  const IMG = `127.0.0.1:5000/kb/redis:7.0-kb1@sha256:${'1'.repeat(64)}`;
  const state: ModuleState = {
    module: 'redis', revision: 1, specHash: 'h', files: [], healthChecks: [],
    containers: [container({ name: 'redis', image: IMG, order: 1 }), container({ name: 'redis-sentinel', image: IMG, order: 2 })],
  };
  let root: string;
  let engine: FakeEngine;
  let actions: ContainerActions;
  let restored: number;
  let ctx: ReconcileContext;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'kb-actions-'));
    engine = new FakeEngine();
    restored = 0;
    const log = pino({ level: 'silent' });
    ctx = { node: 'redis-01', driver: engine, hostRoot: root, sharedEngine: false, log, isHeld: (m, c) => actions.isHeld(m, c) };
    actions = new ContainerActions({ ctx, log, onRestored: () => { restored++; } });
    await reconcileModule(ctx, state);
  });
  afterEach(async () => {
    actions.clear();
    await rm(root, { recursive: true, force: true });
  });

  for (const action of ['stop', 'kill', 'pause'] as const) {
    it(`${action}: the container stays ${action === 'pause' ? 'paused' : 'exited'} through reconciles until start`, async () => {
      const res = await actions.handle({ id: 'a', module: 'redis', container: 'redis', action, holdMs: 60_000 });
      expect(res).toMatchObject({ id: 'a', ok: true, state: action === 'pause' ? 'paused' : 'exited' });
      expect(actions.isHeld('redis', 'redis')).toBe(true);
      const r = await reconcileModule(ctx, state);
      expect(r.actions).toEqual([]);
      expect(engine.byName('redis')!.state).toBe(action === 'pause' ? 'paused' : 'exited');
      expect(engine.byName('redis-sentinel')!.state).toBe('running');
      const back = await actions.handle({ id: 'b', module: 'redis', container: 'redis', action: 'start', holdMs: 0 });
      expect(back).toMatchObject({ ok: true, state: 'running' });
      expect(actions.isHeld('redis', 'redis')).toBe(false);
      expect(restored).toBe(1);
    });
  }

  it('a hold ends by itself: the agent restores the container', async () => {
    await actions.handle({ id: 'a', module: 'redis', container: 'redis', action: 'stop', holdMs: 50 });
    expect(engine.byName('redis')!.state).toBe('exited');
    await new Promise((r) => setTimeout(r, 200));
    expect(actions.isHeld('redis', 'redis')).toBe(false);
    expect(engine.byName('redis')!.state).toBe('running');
    expect(restored).toBe(1);
  });

  it('refuses unknown actions and containers, holding nothing', async () => {
    expect(await actions.handle({ id: 'x', module: 'redis', container: 'redis', action: 'explode', holdMs: 0 })).toMatchObject({ ok: false, error: 'unknown container action "explode" (stop, kill, pause, start)' });
    expect(await actions.handle({ id: 'y', module: 'redis', container: 'nope', action: 'stop', holdMs: 0 })).toMatchObject({ ok: false, error: 'container nope of module redis does not exist on redis-01' });
    expect(actions.isHeld('redis', 'nope')).toBe(false);
    expect(engine.byName('redis')!.state).toBe('running');
  });
});

describe('failoverReadiness (can a Sentinel fail the master over now)', () => {
  const replica = (ip: string, flags: string, link: string) => ['name', `${ip}:6379`, 'ip', ip, 'port', '6379', 'flags', flags, 'master-link-status', link];
  const sentinel = (ip: string) => ['name', 'x', 'ip', ip, 'port', '26379', 'flags', 'sentinel'];
  const want = { replicas: 2, sentinels: 2 };
  it('is ready with every replica in sync and every other Sentinel known', () => {
    expect(failoverReadiness([replica('127.0.1.2', 'slave', 'ok'), replica('127.0.1.3', 'slave', 'ok')], [sentinel('127.0.1.2'), sentinel('127.0.1.3')], want)).toBeUndefined();
  });
  it('names what is missing: replicas not yet learned, a replica down or not in sync, Sentinels not yet heard', () => {
    expect(failoverReadiness([], [], want)).toBe('knows 0 of 2 replicas in sync, knows 0 of 2 other Sentinels');
    expect(failoverReadiness([replica('127.0.1.2', 'slave', 'ok'), replica('127.0.1.3', 's_down,slave,disconnected', 'err')], [sentinel('127.0.1.2'), sentinel('127.0.1.3')], want))
      .toBe('knows 1 of 2 replicas in sync (127.0.1.3:6379 s_down,slave,disconnected, link err)');
    expect(failoverReadiness([replica('127.0.1.2', 'slave', 'ok'), replica('127.0.1.3', 'slave', 'ok')], [sentinel('127.0.1.2')], want)).toBe('knows 1 of 2 other Sentinels');
    expect(failoverReadiness(null, 'ERR', want)).toBe('knows 0 of 2 replicas in sync, knows 0 of 2 other Sentinels');
  });
});
