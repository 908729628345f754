import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cluster.js';

// Keeps bench/rollout-vs-ansible working: one node, one pass of the three scenarios without
// the quiet pauses, docs untouched. It judges no speed (that lives in docs/benchmarks.md): it
// checks that kb and Ansible both ran every scenario to the end, that each reported a wall
// time, and that the benchmark's own after-the-fact checks (PING with the password, the
// expected image digest) passed for both.

const SCENARIOS = ['first', 'noop', 'bump'] as const;

interface ToolResult { ms: number; detail: string; verified: boolean }
interface SizeResult { nodes: number; kb: Record<string, ToolResult>; ansible: Record<string, ToolResult> }

describe('bench smoke: rollout vs Ansible', () => {
  it('bench/rollout-vs-ansible runs the three scenarios with kb and with Ansible on one node and reports their times', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-'));
    const json = path.join(dir, 'result.json');
    try {
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(process.execPath, [path.join(repoRoot, 'bench/run.mjs'), '--no-build', 'rollout-vs-ansible', '--nodes', '1', '--pause', '0', '--no-docs', '--json', json],
          { cwd: repoRoot, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: `${stdout}${stderr}` }));
      });
      if (r.code !== 0) console.log(r.out);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/\| 1 \| first rollout \(nothing deployed\) \| \d+\.\d+ s \| \d+\.\d+ s \|/);
      const res = JSON.parse(readFileSync(json, 'utf8')) as { results: SizeResult[] };
      expect(res.results.map((x) => x.nodes)).toEqual([1]);
      const one = res.results[0]!;
      for (const s of SCENARIOS) {
        for (const tool of ['kb', 'ansible'] as const) {
          const t = one[tool][s];
          expect(t, `${tool} ${s}`).toBeDefined();
          expect(t!.ms, `${tool} ${s} time`).toBeGreaterThan(0);
          expect(t!.verified, `${tool} ${s}: redis answers PING and runs the expected digest`).toBe(true);
        }
      }
      // What each tool said about the work: kb changed the node, then nothing, then the node again;
      // Ansible changed things, then nothing (the benchmark checks that re-run is a no-op), then something.
      expect(one.kb.first!.detail).toMatch(/^succeeded, 1 nodes changed/);
      expect(one.kb.noop!.detail).toMatch(/^succeeded \(no-op\), 0 nodes changed/);
      expect(one.kb.bump!.detail).toMatch(/^succeeded, 1 nodes changed/);
      expect(one.ansible.first!.detail).toMatch(/changed=[1-9]\d* failed=0 unreachable=0/);
      expect(one.ansible.noop!.detail).toMatch(/changed=0 failed=0 unreachable=0/);
      expect(one.ansible.bump!.detail).toMatch(/changed=[1-9]\d* failed=0 unreachable=0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
