import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cluster.js';

// Keeps bench/fleet working: 50 simulated nodes (real enrollment, real mTLS, one TCP
// connection each), kb and the bare grpc-js floor, a 2 s health interval, docs untouched.
// It judges no speed (that lives in docs/benchmarks.md): it checks the benchmark runs to the
// end for both sides and reports every metric.

interface Side {
  connected: number; tcp: number; connectMs: number;
  fanout: { acked: number; p50Ms?: number; p99Ms?: number };
  ingest: { cpuPercent: number; reports: number };
  rssMb: number; openAtEnd: number;
  rollout?: { state: string; nodes: number };
  rounds: { acks: number[]; p50Ms?: number; p99Ms?: number; cpu: string; plannedMs?: number }[];
}

describe('bench fleet smoke', () => {
  it('bench/fleet connects 50 simulated agents to kb and to the floor and reports every metric for both', async () => {
    const json = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-bench-')), 'fleet.json');
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(process.execPath, [path.join(repoRoot, 'bench/run.mjs'), '--no-build', 'fleet', '--nodes', '50', '--workers', '2', '--ingest-s', '3', '--health-interval-ms', '2000', '--rounds', '2', '--no-docs', '--json', json],
        { cwd: repoRoot, timeout: 85_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, KB_E2E_SUBNET: process.env.KB_E2E_SUBNET ?? '127.0.1' } },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: `${stdout}${stderr}` }));
    });
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    // The floor runs with the V8 flags the coordinator names on its listening line (ADR 0018).
    expect(r.out).toContain('coordinator V8 flags: --heap-growing-percent=20 (the floor gets the same)');
    for (const side of ['kb', 'floor']) expect(r.out).toMatch(new RegExp(`\\| 50 \\| ${side} \\| 50/50 \\(\\d+\\) \\| \\d`));
    const res = JSON.parse(readFileSync(json, 'utf8')) as { results: { nodes: number; kb: Side; floor: Side }[] };
    expect(res.results).toHaveLength(1);
    const { kb, floor } = res.results[0]!;
    for (const [name, s] of [['kb', kb], ['floor', floor]] as const) {
      expect(s.connected, name).toBe(50);
      // One TCP connection per session, counted by ss on the server's port.
      expect(s.tcp, name).toBe(50);
      expect(s.connectMs, name).toBeGreaterThan(0);
      expect(s.fanout.acked, name).toBe(50);
      expect(s.fanout.p50Ms, name).toBeGreaterThanOrEqual(0);
      expect(s.fanout.p99Ms, name).toBeGreaterThanOrEqual(s.fanout.p50Ms!);
      expect(s.ingest.reports, name).toBeGreaterThan(0);
      expect(s.ingest.cpuPercent, name).toBeGreaterThanOrEqual(0);
      expect(s.rssMb, name).toBeGreaterThan(10);
      expect(s.openAtEnd, name).toBe(50);
      // Two fan-out rounds (kb: revisions 1 and 2), each acknowledged by every node; the
      // table's figures pool both rounds' acknowledgements.
      expect(s.rounds, name).toHaveLength(2);
      for (const x of s.rounds) {
        expect(x.acks, name).toHaveLength(50);
        // Where the fan-out's CPU went, from /proc: the server's threads (busiest first; at 50
        // nodes a GC helper can outdo the main thread, and a round over within one 10 ms clock
        // tick shows no thread at all) and the simulated agents.
        expect(x.cpu, name).toMatch(/^CPU until the last ack was seen .*: server \d+ ms \((|(.*, )?main thread \d+.*)\), simulated agents \d+ ms, over \d+ ms$/);
      }
      expect(s.fanout.p99Ms, name).toBe([...s.rounds.flatMap((x) => x.acks)].sort((a, b) => a - b)[98]);
    }
    expect(r.out).toContain('kb: round 2: 50 acks');
    // The simulated agents apply nothing (no container engine) and say so: the rollout fails on every node.
    expect(kb.rollout).toMatchObject({ state: 'failed', nodes: 50 });
    expect(r.out).toMatch(/kb: round 2: rollout planned and stored after \d+ ms, failed after/);
    for (const x of kb.rounds) expect(x.plannedMs).toBeGreaterThanOrEqual(0);
    // The floor sends kb's message as kb encoded it, file contents and credentials included (the run stops otherwise).
    const bytes = /floor: sends kb's (\d+)-byte message \(the state and (\d+) credentials beside it\)/.exec(r.out);
    expect(Number(bytes?.[1])).toBeGreaterThan(1000);
    expect(Number(bytes?.[2])).toBe(1); // the haproxy module's redis credentials
  });
});
