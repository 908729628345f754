import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cluster.js';

// Keeps bench/agent-footprint working: a 5 s idle window, the first two agent windows and
// the floor peers only (--smoke), docs untouched. It judges no number (RSS and CPU live in docs/benchmarks.md); it checks the
// benchmark runs to the end and reports memory and CPU for the real agent and its peers.

interface Row { name: string; rssMb: { avg: number; max: number }; pssMb: number; ussMb: number; cpuPercent: number; windowS: number; breakdown: { executableKb: number; anonKb: number }; memory?: { heapUsedKb: number; heapTotalKb: number } }

describe('bench agent-footprint smoke', () => {
  it('measures the enrolled single-executable agent and the Node floor side by side and reports them', async () => {
    const json = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-bench-')), 'result.json');
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(process.execPath, [path.join(repoRoot, 'bench/run.mjs'), '--no-build', 'agent-footprint', '--idle', '5', '--settle', '1', '--smoke', '--no-docs', '--json', json],
        { cwd: repoRoot, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: `${stdout}${stderr}` }));
    });
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\| kb-agent \| [^|]+ \| \d+\.\d MB \|/);
    expect(r.out).toMatch(/\| SEA floor \| none \| \d+\.\d MB \|/);
    expect(r.out).toMatch(/RSS <= 60 MB (met|missed)/);
    const res = JSON.parse(readFileSync(json, 'utf8')) as { results: Row[] };
    const names = res.results.map((x) => x.name);
    expect(names).toEqual(['kb-agent, first process', 'kb-agent', 'node floor', 'SEA floor']);
    for (const x of res.results) {
      expect(x.windowS, x.name).toBeGreaterThanOrEqual(4);
      expect(x.rssMb.avg, x.name).toBeGreaterThan(0);
      expect(x.rssMb.max, x.name).toBeGreaterThanOrEqual(x.rssMb.avg);
      expect(x.ussMb, x.name).toBeGreaterThan(0);
      expect(x.cpuPercent, x.name).toBeGreaterThanOrEqual(0);
      expect(x.breakdown.executableKb, x.name).toBeGreaterThan(0);
      // every process answered SIGUSR2 with its V8 heap (the agent in its log, the peers on stdout)
      expect(x.memory?.heapUsedKb, x.name).toBeGreaterThan(0);
      expect(x.memory!.heapTotalKb, x.name).toBeGreaterThanOrEqual(x.memory!.heapUsedKb);
    }
  });
});
