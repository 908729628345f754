import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkSecretValue, parseEnvFile, redisQuote, renderEnvFile, renderTemplate, shellDoubleQuote, templateRefs, TemplateError,
} from '../../shared/credentials/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kb-envfile-'));
const TRICKY: Record<string, string> = {
  DQUOTE: 'a"b', DOLLAR: '$HOME and ${PATH} and $(id)', BACKTICK: '`id`', BACKSLASH: 'a\\b\\\\c\\', SQUOTE: "it's", BANG: 'x!y!!',
  HASH: '#not a comment', SPACES: '  lead and trail  ', UTF8: 'mot de passe: été ✓', EMPTY: '', ALL: '"$`\\\'!#; &|<>(){}[]*?~',
};

/** What a real shell gets from `. file`, NUL-separated, for each name. */
function source(shell: string, file: string, names: string[]): Record<string, string> {
  const out = execFileSync(shell, ['-c', 'set -eu; . "$1"; shift; for v in "$@"; do eval "val=\\${$v}"; printf \'%s\\0\' "$val"; done', 'sh', file, ...names]);
  const parts = out.toString('utf8').split('\0');
  return Object.fromEntries(names.map((n, i) => [n, parts[i]!]));
}

describe('credentials file format', () => {
  it('renders export lines that bash and dash source back to exactly the stored values', () => {
    const file = path.join(dir, 'tricky.env');
    const text = renderEnvFile({ name: 'tricky', version: 3, vars: TRICKY, order: ['DQUOTE'] });
    writeFileSync(file, text);
    expect(text.split('\n')[0]).toBe('# tricky credentials, version 3. Managed by kb: edits are overwritten (kbctl secrets).');
    expect(text.split('\n')[1]).toBe('export DQUOTE="a\\"b"');
    for (const line of text.trim().split('\n').slice(1)) expect(line).toMatch(/^export [A-Z0-9_]+=".*"$/);
    // busybox sh (the shell of alpine images) is checked by the e2e tests, where the test bed provides it.
    for (const shell of ['bash', 'dash']) expect(source(shell, file, Object.keys(TRICKY)), shell).toEqual(TRICKY);
  });

  it('parses what it renders, and what old scripts wrote, without running anything', () => {
    const text = renderEnvFile({ name: 't', version: 1, vars: TRICKY });
    expect(Object.fromEntries(parseEnvFile(text, 't.env').vars)).toEqual(TRICKY);
    const old = ['# old', 'export A="x"', "B='single $quoted'", 'C=bare', 'export D="con"\'cat\'ed', '   ', 'export E="with # hash" # trailing comment', ''].join('\n');
    const r = parseEnvFile(old, 'old.env');
    expect(r.problems).toEqual([]);
    expect(Object.fromEntries(r.vars)).toEqual({ A: 'x', B: 'single $quoted', C: 'bare', D: 'concated', E: 'with # hash' });
  });

  it('reports lines a parser cannot take without running a shell, with file:line and never the value', () => {
    const secret = 'S3cretValue';
    const bad = [`export A="${secret}$(id)"`, `B=${secret}\`x\``, `C="${secret}`, 'not an assignment', `D=${secret} extra`, `E='${secret}`].join('\n');
    const r = parseEnvFile(bad, 'bad.env');
    expect(r.problems.map((p) => [p.line, p.field])).toEqual([[1, 'A'], [2, 'B'], [3, 'C'], [4, undefined], [5, 'D'], [6, 'E']]);
    for (const p of r.problems) expect(JSON.stringify(p)).not.toContain(secret);
    expect(parseEnvFile('A="x"\0', 'nul.env').problems).toEqual([{ file: 'nul.env', line: 0, message: 'file contains a NUL byte' }]);
  });

  it('rejects values with a newline, a carriage return or NUL at creation, naming the variable only', () => {
    expect(checkSecretValue('a\nb')).toBe('contains a newline');
    expect(checkSecretValue('a\rb')).toBe('contains a carriage return');
    expect(checkSecretValue('a\0b')).toBe('contains a NUL byte');
    expect(checkSecretValue('fine "$`\\')).toBeUndefined();
    expect(() => renderEnvFile({ name: 'x', version: 1, vars: { P: 'line1\nline2' } })).toThrow('x: value of P contains a newline');
    expect(() => renderEnvFile({ name: 'x', version: 1, vars: { 'BAD-NAME': 'v' } })).toThrow('invalid variable name');
    expect(shellDoubleQuote('$a')).toBe('"\\$a"');
  });
});

describe('credential templates', () => {
  const values: Record<string, Record<string, string>> = { 'redis@1': { P: 'old"pass\\' }, 'redis@2': { P: 'new pass' } };
  const lookup = (name: string, version: number, v: string) => values[`${name}@${version}`]?.[v];

  it('renders references with raw, shell, redis and sha256 functions', () => {
    const t = 'masterauth {{redis redis@1 P}}\nuser default on #{{sha256 redis@1 P}} #{{ sha256 redis@2 P }}\nexport X={{shell redis@2 P}}\nraw={{raw redis@2 P}}\n';
    expect(templateRefs(t).map((r) => `${r.fn} ${r.name}@${r.version} ${r.variable}`)).toEqual(['redis redis@1 P', 'sha256 redis@1 P', 'sha256 redis@2 P', 'shell redis@2 P', 'raw redis@2 P']);
    const out = renderTemplate(t, lookup);
    expect(out).toBe([
      'masterauth "old\\"pass\\\\"',
      'user default on #bd3d6db9af020f69192e953144287af676b07e68a3548e32102cf2f1d1ce6306 #cf9e95a6539a1246f7ac270a052dcf077ea1eccf2fd6607c243e795d3289940d',
      'export X="new pass"',
      'raw=new pass',
      '',
    ].join('\n'));
  });

  it('refuses unknown functions, malformed references and missing values, naming the reference', () => {
    expect(() => templateRefs('{{md5 redis@1 P}}')).toThrow(TemplateError);
    expect(() => templateRefs('x {{redis redis P}}')).toThrow('malformed reference');
    expect(() => renderTemplate('{{raw redis@3 P}}', lookup)).toThrow('no value for redis@3 P');
  });

  it('quotes for redis.conf: backslash, double quote and control characters escaped', () => {
    expect(redisQuote('a"b\\c\td')).toBe('"a\\"b\\\\c\\x09d"');
  });
});
