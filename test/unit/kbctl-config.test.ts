import { chmodSync, mkdtempSync, writeFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileOptions } from '../../coordinator/coordinator.js';
import { ConfigFileError, readKbConfig, resolveConfigPath, writeKbConfig } from '../../coordinator/kbctl/config.js';
import { ControlClient } from '../../coordinator/kbctl/client.js';

const PEM = '-----BEGIN X-----\nAA==\n-----END X-----\n';

describe('kbctl credential file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-cfg-'));

  it('is written 0600 and read back', () => {
    const f = path.join(dir, 'ok');
    writeKbConfig(f, { coordinators: ['install-01:7443'], ca: PEM, certificate: PEM, key: PEM });
    expect((statSync(f).mode & 0o777).toString(8)).toBe('600');
    expect(readKbConfig(f)).toEqual({ coordinators: ['install-01:7443'], ca: PEM, certificate: PEM, key: PEM });
  });

  it('refuses a missing file, a group/world-readable one, and missing fields, naming the file', () => {
    expect(() => readKbConfig(path.join(dir, 'none'))).toThrow(/no admin credential: .*none does not exist/);
    const open = path.join(dir, 'open');
    writeKbConfig(open, { coordinators: ['a:1'], ca: PEM, certificate: PEM, key: PEM });
    chmodSync(open, 0o644);
    expect(() => readKbConfig(open)).toThrow(`${open}: mode 0644 lets other users read the admin key`);
    const partial = path.join(dir, 'partial');
    writeFileSync(partial, `coordinators: [a:1]\nca: |\n  ${PEM.replace(/\n/g, '\n  ')}\n`, { mode: 0o600 });
    expect(() => readKbConfig(partial)).toThrow(ConfigFileError);
    expect(() => readKbConfig(partial)).toThrow('field certificate, key missing or not PEM');
  });

  it('is looked up in --config, then KB_CONFIG, then ~/.kb/config', () => {
    expect(resolveConfigPath('/x', { KB_CONFIG: '/y' })).toBe('/x');
    expect(resolveConfigPath(undefined, { KB_CONFIG: '/y' })).toBe('/y');
    expect(resolveConfigPath(undefined, {})).toBe(path.join(os.homedir(), '.kb', 'config'));
  });

  it('kbctl refuses to run without a credential, and plaintext only on loopback', () => {
    expect(() => new ControlClient({ address: 'install-01:7443', plaintext: false })).toThrow('no admin credential');
    expect(() => new ControlClient({ address: '10.0.0.250:7443', plaintext: true })).toThrow('--plaintext refuses non-loopback coordinator address 10.0.0.250:7443');
  });
});

describe('coordinator options', () => {
  it('mTLS is the default; --plaintext refuses a non-loopback address', () => {
    const c = compileOptions({ inventoryFile: 'i', versionsFile: 'v', listen: '10.0.0.250:7443' });
    expect(c.plaintext).toBe(false);
    expect(c.bootstrapPort).toBe(7444);
    expect(c.sans).toContain('10.0.0.250');
    expect(c.advertise).toBe('10.0.0.250');
    expect(() => compileOptions({ inventoryFile: 'i', versionsFile: 'v', listen: '10.0.0.250:7443', plaintext: true })).toThrow('--plaintext refuses non-loopback listen address 10.0.0.250');
    expect(compileOptions({ inventoryFile: 'i', versionsFile: 'v', listen: '0.0.0.0:7443', advertise: 'install-01' }).sans).toContain('install-01');
  });
});
