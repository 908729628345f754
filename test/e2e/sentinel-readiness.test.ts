import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sentinelsNotReady, waitForFailoverReadiness } from '../../shared/redis/sentinel.js';
import { Proc, freePort, waitFor } from '../helpers/proc.js';

// What `kbctl drill redis-failover` (and bench/redis-failover) wait for before breaking the
// master: every Sentinel knows every replica in sync and the other Sentinels. Checked here on
// the real redis-server and redis-sentinel (the test bed installs them), on 127.0.0.1.

const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-sentinel-ready-'));
const procs: Proc[] = [];

function start(name: string, args: string[]): Proc {
  const p = new Proc(name, '/usr/bin/redis-server', args, path.join(dir, `${name}.log`));
  procs.push(p);
  return p;
}

const redisArgs = (port: number) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`];

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

describe('Sentinel failover readiness', () => {
  it('names a Sentinel that knows no replica yet, is ready once it has learned the replica, and names a wrong master name', async () => {
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    start('master', redisArgs(masterPort));
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, [
      `port ${sentinelPort}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor kbtest 127.0.0.1 ${masterPort} 1`, 'sentinel down-after-milliseconds kbtest 5000',
    ].join('\n') + '\n');
    start('sentinel', [conf, '--sentinel']);
    const sentinel = [{ host: '127.0.0.1', port: sentinelPort }];
    const want = { replicas: 1, sentinels: 0 };
    const opts = { timeoutMs: 1000 };

    // The master has no replica: the Sentinel cannot fail it over, and says why.
    const before = await waitFor('the Sentinel answering', () => sentinelsNotReady(sentinel, 'kbtest', want, opts).then((p) => (p && !p.includes('ECONNREFUSED') ? p : undefined)), 10_000, 100);
    expect(before).toBe(`127.0.0.1:${sentinelPort} knows 0 of 1 replicas in sync`);

    // The drill's wait (waitForFailoverReadiness) runs out while no replica exists, and says
    // what the Sentinel lacked at the last ask: the drill then refuses before breaking anything.
    const gaveUp = await waitForFailoverReadiness(sentinel, 'kbtest', want, { ...opts, maxWaitMs: 1500, everyMs: 250 });
    expect(gaveUp.notReady).toBe(`127.0.0.1:${sentinelPort} knows 0 of 1 replicas in sync`);
    expect(gaveUp.waitedMs).toBeGreaterThanOrEqual(1500);

    // A replica attaches; the Sentinel learns it from the master's INFO (every 10 s at most),
    // and the same wait ends as soon as it has.
    start('replica', [...redisArgs(replicaPort), '--replicaof', '127.0.0.1', String(masterPort)]);
    const ready = await waitForFailoverReadiness(sentinel, 'kbtest', want, { ...opts, maxWaitMs: 30_000, everyMs: 250 });
    expect(ready.notReady).toBeUndefined();
    expect(ready.waitedMs).toBeLessThan(30_000);
    expect(await sentinelsNotReady(sentinel, 'kbtest', want, opts)).toBeUndefined();

    // Wanting another Sentinel that is not there, or asking about a master it does not monitor.
    expect(await sentinelsNotReady(sentinel, 'kbtest', { replicas: 1, sentinels: 1 }, opts)).toBe(`127.0.0.1:${sentinelPort} knows 0 of 1 other Sentinels`);
    expect(await sentinelsNotReady(sentinel, 'nosuch', want, opts)).toMatch(new RegExp(`^127\\.0\\.0\\.1:${sentinelPort}: .*No such master`, 'i'));
  });
});
