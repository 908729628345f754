import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError, formatProblem } from '../../shared/errors/index.js';
import { loadInventory } from '../../shared/inventory/index.js';
import { moduleSpecHash, sha256Hex } from '../../shared/plan/hash.js';
import { parseVersions } from '../../shared/versions/index.js';
import { haproxyModule } from '../../coordinator/modules/haproxy.js';
import { REDIS_START_SCRIPT, SENTINEL_START_SCRIPT, redisModule, sentinelId } from '../../coordinator/modules/redis.js';
import { parseSettings } from '../../coordinator/modules/settings-file.js';
import { computeDesired } from '../../coordinator/planner.js';
import type { PlanInputs } from '../../coordinator/modules/types.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

// The redis and haproxy modules rendered from the real 48-row inventory (never contacted:
// the image resolver is a stub), and their container start scripts run by a real sh.

const inventory = loadInventory(sharedFixture('servers.tsv'));
const versions = parseVersions('redis_image: "redis:7.2.5-alpine"\nhaproxy_image: "haproxy:2.8.5"\n', 'versions.yaml');
const resolver = { resolve: async (ref: string) => `${ref}@sha256:${'a'.repeat(64)}` };

function inputs(settings = ''): PlanInputs {
  return { inventory, versions, settings: parseSettings(settings, 'modules.yaml', ['redis', 'haproxy']) };
}

async function problems(def: typeof redisModule | typeof haproxyModule, settings: string): Promise<string[]> {
  try {
    await computeDesired(def as never, inputs(settings), resolver);
  } catch (err) {
    if (err instanceof InputError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}

describe('redis module', () => {
  it('renders redis + redis-sentinel on the three Redis nodes, master first, bound to private addresses', async () => {
    const d = await computeDesired(redisModule as never, inputs(), resolver);
    expect(d.order).toEqual(['redis-01', 'redis-02', 'redis-03']);
    const master = d.states['redis-01']!;
    const ips = d.order.map((n) => inventory.servers.find((s) => s.hostname === n)!.privateIp);
    expect(master.containers.map((c) => c.name)).toEqual(['redis', 'redis-sentinel']);
    const redis = master.containers[0]!;
    expect(redis.image).toBe(`redis:7.2.5-alpine@sha256:${'a'.repeat(64)}`);
    expect(redis.args.slice(2)).toEqual(['redis-server', '--bind', ips[0], '--port', '6379', '--replica-announce-ip', ips[0], '--appendonly', 'yes', '--maxmemory-policy', 'allkeys-lru']);
    expect(redis.env).toEqual({
      KB_SELF: `${ips[0]}:6379`, KB_DEFAULT_MASTER: '', KB_SENTINELS: ips.map((ip) => `${ip}:26379`).join(' '),
      KB_MASTER_NAME: 'kb-redis-master', KB_SENTINEL_MAJORITY: '2',
    });
    expect(d.states['redis-02']!.containers[0]!.env.KB_DEFAULT_MASTER).toBe(`${ips[0]}:6379`);
    const template = master.files[0]!;
    expect(template).toMatchObject({ path: '/opt/keybuzz/redis/sentinel/kb-template.conf', mode: 0o644 });
    const text = template.content.toString();
    for (const line of [
      'port 26379', `bind ${ips[0]}`, `sentinel announce-ip ${ips[0]}`, `sentinel monitor kb-redis-master ${ips[0]} 6379 2`,
      'sentinel down-after-milliseconds kb-redis-master 5000', 'sentinel failover-timeout kb-redis-master 60000', 'sentinel parallel-syncs kb-redis-master 1',
    ]) expect(text.split('\n')).toContain(line);
    // Each Sentinel's id comes from its hostname; the template names the two others, after `sentinel monitor`.
    expect(sentinelId('redis-01')).toMatch(/^[0-9a-f]{40}$/);
    expect(new Set(d.order.map(sentinelId)).size).toBe(3);
    expect(text.split('\n')).toContain(`sentinel myid ${sentinelId('redis-01')}`);
    const known = text.split('\n').filter((l) => l.startsWith('sentinel known-sentinel '));
    expect(known).toEqual([1, 2].map((i) => `sentinel known-sentinel kb-redis-master ${ips[i]} 26379 ${sentinelId(d.order[i]!)}`));
    expect(text.indexOf('sentinel known-sentinel ')).toBeGreaterThan(text.indexOf('sentinel monitor '));
    // Replicas monitor the same master from their own address.
    expect(d.states['redis-03']!.files[0]!.content.toString()).toContain(`bind ${ips[2]}\n`);
    expect(d.states['redis-03']!.files[0]!.content.toString()).toContain(`sentinel monitor kb-redis-master ${ips[0]} 6379 2`);
    const sentinel = master.containers[1]!;
    expect(sentinel.env.KB_SENTINEL_TEMPLATE_SHA256).toBe(sha256Hex(text));
    expect(sentinel.volumes).toEqual([{ hostPath: '/opt/keybuzz/redis/sentinel', containerPath: '/sentinel', readOnly: false }]);
    expect(master.healthChecks.map((c) => `${c.name}:${c.kind}`)).toEqual(['redis-port:tcp', 'sentinel-port:tcp', 'redis-replication:redis-replication', 'sentinels-agree:redis-sentinel']);
    expect(master.healthChecks[3]).toMatchObject({ host: ips[0], port: 26379, minSentinels: 3, masterName: 'kb-redis-master', sentinels: ips.map((ip) => `${ip}:26379`) });
    expect(master.redisFollower).toBeUndefined();
  });

  it('takes every Sentinel setting from the settings file', async () => {
    const d = await computeDesired(redisModule as never, inputs('redis:\n  master_name: kb-master-2\n  sentinel_port: 26380\n  sentinel_quorum: 3\n  down_after_ms: 3000\n  failover_timeout_ms: 30000\n  parallel_syncs: 2\n'), resolver);
    const text = d.states['redis-02']!.files[0]!.content.toString();
    expect(text).toContain('port 26380\n');
    expect(text).toMatch(/sentinel monitor kb-master-2 \S+ 6379 3\n/);
    expect(text).toContain('sentinel down-after-milliseconds kb-master-2 3000\n');
    expect(text).toContain('sentinel failover-timeout kb-master-2 30000\n');
    expect(text).toContain('sentinel parallel-syncs kb-master-2 2\n');
  });

  it('refuses bad Sentinel settings, naming the file and field', async () => {
    expect(await problems(redisModule, 'redis:\n  sentinel_quorum: 4\n')).toEqual(['modules.yaml:1: sentinel_quorum: must be between 1 and the number of redis nodes (3)']);
    expect(await problems(redisModule, 'redis:\n  master_name: "kb master"\n')).toEqual(['modules.yaml:1: master_name: must be 1-64 characters among A-Z a-z 0-9 . _ -']);
    expect(await problems(redisModule, 'redis:\n  nodes:\n    redis-02: { master_name: other }\n')).toEqual(['modules.yaml:1: nodes.redis-02.master_name: must be the same on every node: set it at module level']);
    expect(await problems(redisModule, 'redis:\n  sentinel_port: 6379\n')).toEqual(['modules.yaml:1: sentinel_port: must differ from port (6379)']);
  });
});

describe('haproxy module', () => {
  it('renders one HAProxy per internal-haproxy node, listening on 0.0.0.0, be_redis_master with exactly one server, Runtime API on a unix socket', async () => {
    const d = await computeDesired(haproxyModule as never, inputs(), resolver);
    expect(d.order).toEqual(['haproxy-01', 'haproxy-02']); // not api-gateway-01 (ROLE=lb, another SUBROLE)
    const st = d.states['haproxy-01']!;
    const cfg = st.files[0]!.content.toString();
    expect(st.files[0]).toMatchObject({ path: '/opt/keybuzz/haproxy/conf/haproxy.cfg', mode: 0o644 });
    expect(cfg).toContain('    bind 0.0.0.0:6379\n');
    expect(cfg).not.toContain('10.0.0.10');
    expect(cfg).toContain('    stats socket /run/kb-haproxy/admin.sock mode 600 level admin\n');
    expect(cfg).toContain('    server-state-file /run/kb-haproxy/server-state\n');
    expect(cfg).toContain('    load-server-state-from-file global\n');
    const backend = cfg.slice(cfg.indexOf('backend be_redis_master'), cfg.indexOf('listen stats'));
    expect(backend.split('\n').filter((l) => /^\s+server\s/.test(l))).toEqual(['    server redis-master redis-master.kb.invalid:6379 init-addr last,192.0.2.1 disabled']);
    expect(backend).toContain('    option redispatch 1\n');
    expect(backend).toContain('    timeout connect 100ms\n');
    const c = st.containers[0]!;
    expect(c).toMatchObject({ name: 'haproxy', image: `haproxy:2.8.5@sha256:${'a'.repeat(64)}`, networkMode: 'host', args: ['-f', '/usr/local/etc/haproxy/haproxy.cfg'] });
    expect(c.env.KB_CONFIG_SHA256).toBe(sha256Hex(cfg));
    const redisIps = ['redis-01', 'redis-02', 'redis-03'].map((n) => inventory.servers.find((s) => s.hostname === n)!.privateIp);
    expect(st.redisFollower).toEqual({
      masterName: 'kb-redis-master', sentinels: redisIps.map((ip) => `${ip}:26379`), runtimeSocket: '/opt/keybuzz/haproxy/run/admin.sock',
      backend: 'be_redis_master', server: 'redis-master', serverStateFile: '/opt/keybuzz/haproxy/run/server-state', reconcileIntervalMs: 2000, timeoutMs: 500,
    });
    expect(st.healthChecks.map((h) => `${h.name}:${h.kind}:${h.host}:${h.port}`)).toEqual([
      'redis-frontend:tcp:127.0.0.1:6379', 'follower:redis-follower::0', 'redis-set-get:redis-setget:127.0.0.1:6379',
    ]);
    // The follower is part of the spec hash: changing it makes a new revision.
    expect(st.specHash).toBe(moduleSpecHash(st));
    expect(moduleSpecHash({ ...st, redisFollower: { ...st.redisFollower!, reconcileIntervalMs: 1000 } })).not.toBe(st.specHash);
  });

  it('follows the redis settings (master name, ports) and binds the private address when asked', async () => {
    const d = await computeDesired(haproxyModule as never, inputs('redis:\n  master_name: kb-master-2\n  sentinel_port: 26380\n  port: 6380\nhaproxy:\n  bind: private\n  stats_port: 0\n'), resolver);
    const st = d.states['haproxy-02']!;
    const cfg = st.files[0]!.content.toString();
    expect(cfg).toContain('    bind 10.0.0.12:6379\n');
    expect(cfg).toContain('redis-master.kb.invalid:6380 ');
    expect(cfg).not.toContain('listen stats');
    expect(st.redisFollower).toMatchObject({ masterName: 'kb-master-2', sentinels: expect.arrayContaining([expect.stringMatching(/:26380$/)]) });
    expect(st.healthChecks[0]).toMatchObject({ host: '10.0.0.12', port: 6379 });
  });

  it('refuses to bind a load-balancer address, and bad redis settings it depends on', async () => {
    expect(await problems(haproxyModule, 'haproxy:\n  bind: 10.0.0.10\n')).toEqual([
      'modules.yaml:1: bind: must be "any" (0.0.0.0) or "private" (the node\'s private address), not "10.0.0.10": HAProxy never binds a load-balancer address',
    ]);
    expect(await problems(haproxyModule, 'haproxy:\n  nodes:\n    haproxy-02: { bind: 10.0.0.10 }\n')).toEqual([
      'modules.yaml:1: nodes.haproxy-02.bind: must be "any" (0.0.0.0) or "private" (the node\'s private address), not "10.0.0.10": HAProxy never binds a load-balancer address',
    ]);
    expect(await problems(haproxyModule, 'redis:\n  sentinel_quorum: 0\n')).toEqual(['modules.yaml:1: sentinel_quorum: must be between 1 and the number of redis nodes (3)']);
  });
});

// ---------------------------------------------------------------------------------------------
// The start scripts, run by /bin/sh with stand-ins for redis-cli and redis-server.

const dir = mkdtempSync(path.join(tmpdir(), 'kb-scripts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs REDIS_START_SCRIPT with a fake redis-cli whose answer per Sentinel host comes from `answers`. */
function redisStart(self: string, defaultMaster: string, answers: Record<string, string>): string {
  const bin = path.join(dir, 'bin');
  execFileSync('mkdir', ['-p', bin]);
  writeFileSync(path.join(bin, 'redis-cli'), '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -h ] && h=$2; shift; done\neval "a=\\${ANSWER_$(echo $h | tr . _)}"\n[ -n "$a" ] && printf "%s\\n%s\\n" "${a%:*}" "${a##*:}"\nexit 0\n');
  chmodSync(path.join(bin, 'redis-cli'), 0o755);
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH}`, KB_SELF: self, KB_DEFAULT_MASTER: defaultMaster, KB_MASTER_NAME: 'kb-redis-master', KB_SENTINEL_MAJORITY: '2',
    KB_SENTINELS: '10.0.0.1:26379 10.0.0.2:26379 10.0.0.3:26379',
  };
  for (const [host, a] of Object.entries(answers)) env[`ANSWER_${host.replace(/\./g, '_')}`] = a;
  return execFileSync('/bin/sh', ['-c', REDIS_START_SCRIPT, 'echo', '--bind', '10.0.0.2', '--save', ''], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

describe('redis start script', () => {
  it('starts as a replica of the master a Sentinel majority names', () => {
    expect(redisStart('10.0.0.2:6379', '10.0.0.1:6379', { '10.0.0.1': '10.0.0.3:6379', '10.0.0.3': '10.0.0.3:6379' })).toBe('--bind 10.0.0.2 --save  --replicaof 10.0.0.3 6379');
  });
  it('starts as a master when the majority names this node, even if the inventory says replica', () => {
    expect(redisStart('10.0.0.2:6379', '10.0.0.1:6379', { '10.0.0.1': '10.0.0.2:6379', '10.0.0.2': '10.0.0.2:6379', '10.0.0.3': '10.0.0.1:6379' })).toBe('--bind 10.0.0.2 --save');
  });
  it('follows the inventory without a majority (first install, or one Sentinel alone)', () => {
    expect(redisStart('10.0.0.2:6379', '10.0.0.1:6379', { '10.0.0.3': '10.0.0.3:6379' })).toBe('--bind 10.0.0.2 --save  --replicaof 10.0.0.1 6379');
    expect(redisStart('10.0.0.1:6379', '', {})).toBe('--bind 10.0.0.2 --save');
  });
});

describe('sentinel start script', () => {
  const sdir = path.join(dir, 'sentinel');
  const bin = path.join(dir, 'sentinel-bin');
  /**
   * Runs the script with a fake redis-cli: ANSWER_<host> is what that host's Sentinel prints
   * for `SENTINEL MYID` then `SENTINEL SENTINELS <master>` (--raw), no variable: no answer.
   */
  const run = (answers: Record<string, string> = {}) => {
    execFileSync('mkdir', ['-p', bin]);
    writeFileSync(path.join(bin, 'redis-cli'), '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -h ] && h=$2; shift; done\ncat > /dev/null\neval "a=\\${ANSWER_$(echo $h | tr . _)}"\n[ -n "$a" ] && printf "%s\\n" "$a"\nexit 0\n');
    chmodSync(path.join(bin, 'redis-cli'), 0o755);
    const env: NodeJS.ProcessEnv = { PATH: `${bin}:${process.env.PATH}` };
    for (const [host, a] of Object.entries(answers)) env[`ANSWER_${host.replace(/\./g, '_')}`] = a;
    return execFileSync('/bin/sh', ['-c', SENTINEL_START_SCRIPT.replaceAll('/sentinel', sdir).replace('exec redis-server', 'exec echo')], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const conf = () => readFileSync(path.join(sdir, 'sentinel.conf'), 'utf8');
  const fresh = (template: string) => {
    rmSync(sdir, { recursive: true, force: true });
    execFileSync('mkdir', ['-p', sdir]);
    writeFileSync(path.join(sdir, 'kb-template.conf'), template);
  };
  const ID = (c: string) => c.repeat(40);
  // The template of 10.0.0.2 in a three-node fleet whose ids are a.., b.., c.. (derived from the hostnames).
  const TEMPLATE = [
    'port 26379', 'sentinel announce-ip 10.0.0.2', `sentinel myid ${ID('b')}`, 'sentinel monitor m 10.0.0.1 6379 2',
    `sentinel known-sentinel m 10.0.0.1 26379 ${ID('a')}`, `sentinel known-sentinel m 10.0.0.3 26379 ${ID('c')}`, '',
  ].join('\n');
  const HEAD = 'port 26379\nsentinel announce-ip 10.0.0.2\nsentinel monitor m 10.0.0.1 6379 2\n';
  /** A Sentinel's answer: its id, then the Sentinels it knows (name, ip, port, runid, flags). */
  const answer = (myid: string, knows: [string, string][]) => [myid, ...knows.flatMap(([ip, id]) => ['name', id, 'ip', ip, 'port', '26379', 'runid', id, 'flags', 'sentinel'])].join('\n');

  it('copies the template only when it changed, keeping what Sentinel learned (and its myid) otherwise', () => {
    fresh('port 26379\nsentinel monitor m 10.0.0.1 6379 2\n');
    run();
    expect(conf()).toBe('port 26379\nsentinel monitor m 10.0.0.1 6379 2\n');
    // Sentinel rewrites its file (a failover happened); a restart keeps it.
    const learned = 'port 26379\nsentinel monitor m 10.0.0.3 6379 2\nsentinel myid abc123\nsentinel config-epoch m 1\n';
    writeFileSync(path.join(sdir, 'sentinel.conf'), learned);
    run();
    expect(conf()).toBe(learned);
    // A new template (an operator changed a setting) replaces it, keeping the myid.
    writeFileSync(path.join(sdir, 'kb-template.conf'), 'port 26379\nsentinel monitor m 10.0.0.1 6379 3\n');
    run();
    expect(conf()).toBe('port 26379\nsentinel monitor m 10.0.0.1 6379 3\nsentinel myid abc123\n');
  });

  it('a new fleet: its derived id, and the others by their derived ids before they answer', () => {
    fresh(TEMPLATE);
    run();
    expect(conf()).toBe(`${HEAD}sentinel myid ${ID('b')}\nsentinel known-sentinel m 10.0.0.1 26379 ${ID('a')}\nsentinel known-sentinel m 10.0.0.3 26379 ${ID('c')}\n`);
  });

  it('a Sentinel that answers with another id is written with the id it answered', () => {
    fresh(TEMPLATE);
    run({ '10.0.0.3': answer(ID('9'), [['10.0.0.1', ID('a')]]) });
    expect(conf()).toBe(`${HEAD}sentinel myid ${ID('b')}\nsentinel known-sentinel m 10.0.0.1 26379 ${ID('a')}\nsentinel known-sentinel m 10.0.0.3 26379 ${ID('9')}\n`);
  });

  it('a rebuilt node takes back the id the others know its address by; a silent Sentinel is then left to its hellos', () => {
    fresh(TEMPLATE);
    run({ '10.0.0.3': answer(ID('7'), [['10.0.0.1', ID('6')], ['10.0.0.2', ID('5')]]) });
    expect(conf()).toBe(`${HEAD}sentinel myid ${ID('5')}\nsentinel known-sentinel m 10.0.0.3 26379 ${ID('7')}\n`);
  });

  it('a Sentinel made before kb named Sentinels keeps its id; only the Sentinels that answer are written', () => {
    fresh(TEMPLATE);
    writeFileSync(path.join(sdir, 'sentinel.conf'), `port 26379\nsentinel myid ${ID('4')}\nsentinel known-sentinel m 10.0.0.1 26379 ${ID('6')}\n`);
    run({ '10.0.0.1': answer(ID('6'), [['10.0.0.2', ID('4')]]), '10.0.0.3': 'NOAUTH Authentication required.\nNOAUTH Authentication required.' });
    expect(conf()).toBe(`${HEAD}sentinel myid ${ID('4')}\nsentinel known-sentinel m 10.0.0.1 26379 ${ID('6')}\n`);
  });
});
