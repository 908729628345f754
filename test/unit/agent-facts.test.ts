import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FactsCollector, osReleaseName } from '../../agent/facts.js';

describe('agent facts: OS description from os-release', () => {
  it('takes PRETTY_NAME, unquoted', () => {
    expect(osReleaseName('NAME="Debian GNU/Linux"\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')).toBe('Debian GNU/Linux 12 (bookworm)');
    expect(osReleaseName("PRETTY_NAME='Alpine Linux v3.19'\n")).toBe('Alpine Linux v3.19');
  });

  it('falls back to NAME VERSION, then to nothing', () => {
    expect(osReleaseName('NAME=Fedora\nVERSION="40 (Server Edition)"\n')).toBe('Fedora 40 (Server Edition)');
    expect(osReleaseName('# comment only\n')).toBe('');
  });

  it('describeOs puts the kernel release after the name, and keeps the os module answer without the file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-facts-'));
    const file = path.join(dir, 'os-release');
    writeFileSync(file, 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n');
    const f = new FactsCollector(dir);
    await f.describeOs(file);
    expect(f.collect().os).toBe(`Debian GNU/Linux 12 (bookworm) (${os.release()})`);
    const g = new FactsCollector(dir);
    await g.describeOs(path.join(dir, 'missing'));
    expect(g.collect().os).toBe(`${os.type()} ${os.release()}`);
  });
});
