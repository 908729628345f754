import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, registerSecretValues, scrub, unregisterSecretValues } from '../../shared/log/index.js';

/** Logs through a real kb logger into a file and returns what was written (`lines` lines). */
async function logged(lines: number, fn: (log: ReturnType<typeof createLogger>) => void): Promise<string> {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'kb-log-')), 'out.log');
  const fd = openSync(file, 'w');
  fn(createLogger({ name: 't', fd, level: 'debug' }));
  // The destination writes asynchronously; the descriptor is left to the process exit.
  for (let i = 0; i < 200 && readFileSync(file, 'utf8').split('\n').filter(Boolean).length < lines; i++) await new Promise((r) => setTimeout(r, 10));
  return readFileSync(file, 'utf8');
}

describe('log redaction', () => {
  it('censors every key a secret travels under', async () => {
    const out = await logged(3, (log) => {
      log.info({ secretValues: [{ name: 'redis', vars: { REDIS_PASSWORD: 'pw-in-values-1' } }] }, 'message');
      log.info({ msg: { desired: { containers: [{ env: { A: 'pw-in-env-2' } }] } } }, 'state');
      log.info({ REDIS_PASSWORD: 'pw-top-3', nested: { POSTGRES_SUPERPASS: 'pw-nested-4', vars: { X: 'pw-vars-5' } } }, 'vars');
    });
    for (const v of ['pw-in-values-1', 'pw-in-env-2', 'pw-top-3', 'pw-nested-4', 'pw-vars-5']) expect(out).not.toContain(v);
    expect(out).toContain('[redacted]');
  });

  it('censors those keys at any depth and inside errors, without touching the logged objects', async () => {
    const deep = { a: { b: { c: { d: { password: 'pw-deep-6', ok: 'visible-1' } } } } };
    const err = Object.assign(new Error('boom'), { token: 'tok-in-error-7', code: 'E_X' });
    const out = await logged(2, (log) => {
      log.info({ deep }, 'deep');
      log.error({ err }, 'with error');
    });
    for (const v of ['pw-deep-6', 'tok-in-error-7']) expect(out).not.toContain(v);
    expect(out).toContain('visible-1');
    expect(out).toContain('E_X');
    expect(out).toContain('boom');
    expect(deep.a.b.c.d.password).toBe('pw-deep-6');
    expect(err.token).toBe('tok-in-error-7');
  });

  it('scrubs values the process holds from messages, errors and fields under any key', async () => {
    registerSecretValues(['Held-Secret-Value-9', 'short']);
    try {
      const out = await logged(2, (log) => {
        log.error({ err: new Error('config line masterauth "Held-Secret-Value-9" rejected'), weird: { deep: ['x Held-Secret-Value-9 y'] } }, 'failed with Held-Secret-Value-9');
        log.info('short is not a secret on its own');
      });
      expect(out).not.toContain('Held-Secret-Value-9');
      expect(out.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(3);
      expect(out).toContain('short is not a secret');
    } finally {
      unregisterSecretValues(['Held-Secret-Value-9']);
    }
    expect(scrub('Held-Secret-Value-9')).toBe('Held-Secret-Value-9');
  });
});
