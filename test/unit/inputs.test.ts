import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Inputs } from '../../coordinator/inputs.js';
import { InputError } from '../../shared/errors/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function setup() {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kb-inputs-'));
  const files = { inventoryFile: path.join(dir, 'servers.tsv'), versionsFile: path.join(dir, 'versions.yaml'), settingsFile: path.join(dir, 'modules.yaml'), env: 'prod' };
  writeFileSync(files.inventoryFile, readFileSync(sharedFixture('servers.tsv')));
  writeFileSync(files.versionsFile, 'redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n');
  writeFileSync(files.settingsFile, 'haproxy:\n  bind: private\n');
  return files;
}

/** Rewrites a file and moves its modification time, so the change is seen whatever the clock's resolution. */
function rewrite(file: string, text: string, bump: number): void {
  writeFileSync(file, text);
  const t = Date.now() / 1000 + bump;
  utimesSync(file, t, t);
}

describe('coordinator inputs', () => {
  it('re-reads only the file that changed: a settings change keeps the parsed inventory and versions', () => {
    const files = setup();
    const inputs = new Inputs(files);
    const first = inputs.current();
    expect(inputs.current()).toBe(first);
    rewrite(files.settingsFile, 'haproxy:\n  bind: private\n  maxconn: 4097\n', 10);
    const second = inputs.current();
    expect(second).not.toBe(first);
    expect(second.settings.haproxy!.values).toEqual({ bind: 'private', maxconn: 4097 });
    expect(second.inventory).toBe(first.inventory);
    expect(second.versions).toBe(first.versions);
    // The inventory changes: read again (one row fewer), the others kept.
    const rows = readFileSync(files.inventoryFile, 'utf8').trimEnd().split('\n');
    rewrite(files.inventoryFile, `${rows.slice(0, -1).join('\n')}\n`, 20);
    const third = inputs.current();
    expect(third.inventory).not.toBe(first.inventory);
    expect(third.inventory.servers.length).toBe(first.inventory.servers.length - 1);
    expect(third.settings).toBe(second.settings);
  });

  it('a bad file is refused naming it, the last good inputs stay available, and fixing it is seen', () => {
    const files = setup();
    const inputs = new Inputs(files);
    const good = inputs.current();
    rewrite(files.versionsFile, 'redis_image: [unclosed\n', 10);
    const err = (() => { try { inputs.current(); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(files.versionsFile);
    expect(inputs.lastGood()).toBe(good);
    rewrite(files.versionsFile, 'redis_image: "127.0.0.1:5000/kb/redis:7.0-kb2"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 20);
    const fixed = inputs.current();
    expect(fixed.versions).not.toBe(good.versions);
    expect(fixed.inventory).toBe(good.inventory);
  });
});
