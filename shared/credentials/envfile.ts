/**
 * The credentials file format of KEYBUZZ.md: shell lines `export VAR="..."`, so that
 * `source file.env` (bash, dash, busybox sh) gives exactly the stored values.
 *
 * Inside double quotes a POSIX shell treats only `\`, `"`, `$` and backquote specially;
 * each is escaped with a backslash, everything else (spaces, quotes, `!`, `#`, UTF-8) is
 * literal. (`!` is not expanded when a file is sourced: history expansion only applies to
 * lines typed at an interactive prompt.) Values containing a newline, a carriage return or
 * NUL cannot round-trip and are rejected when they are created.
 *
 * Messages from this module never contain a value.
 */
import type { Problem } from '../errors/index.js';

/** A variable name as the shell accepts it. */
export const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why `value` cannot be stored, or undefined when it can. Never includes the value. */
export function checkSecretValue(value: string): string | undefined {
  if (value.includes('\n')) return 'contains a newline';
  if (value.includes('\r')) return 'contains a carriage return';
  if (value.includes('\0')) return 'contains a NUL byte';
  return undefined;
}

/** `value` double-quoted for a POSIX shell: `"` + value with `\ " $ backquote` escaped + `"`. */
export function shellDoubleQuote(value: string): string {
  return `"${value.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

/**
 * Renders a credentials file. `order` lists variable names in the order they should appear
 * (the catalog order); variables not in it follow, sorted. Throws on an invalid name or value
 * (the message names the variable, never the value).
 */
export function renderEnvFile(opts: { name: string; version: number; vars: Readonly<Record<string, string>>; order?: readonly string[] }): string {
  const names = Object.keys(opts.vars);
  const ordered = [...(opts.order ?? []).filter((n) => names.includes(n)), ...names.filter((n) => !(opts.order ?? []).includes(n)).sort()];
  const lines = [`# ${opts.name} credentials, version ${opts.version}. Managed by kb: edits are overwritten (kbctl secrets).`];
  for (const n of ordered) {
    if (!VAR_NAME.test(n)) throw new Error(`${opts.name}: invalid variable name "${n}"`);
    const v = opts.vars[n]!;
    const bad = checkSecretValue(v);
    if (bad) throw new Error(`${opts.name}: value of ${n} ${bad}`);
    lines.push(`export ${n}=${shellDoubleQuote(v)}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface ParsedEnvFile {
  /** Variables in file order (last assignment wins). */
  vars: Map<string, string>;
  /** Problems by line; values are never quoted in messages. */
  problems: Problem[];
}

/**
 * Parses a credentials file written by kb or by the old install scripts, without running it.
 * Accepted lines: blank, `# comment`, and `[export ]NAME=VALUE` where VALUE is
 *  - "double-quoted": `\\ \" \$ \`` and backslash-newline are escapes, any other backslash is literal;
 *  - 'single-quoted': literal;
 *  - a bare word without spaces, quotes, `$`, backquotes, backslashes or `;&|<>()`;
 *  - a concatenation of those (`"a"'b'c`), as a shell would read it.
 * Anything a shell would expand (`$VAR`, `$(...)`, backquotes), spans lines or is not an
 * assignment is a problem: kb refuses to guess what a script would compute.
 */
export function parseEnvFile(text: string, file: string): ParsedEnvFile {
  const vars = new Map<string, string>();
  const problems: Problem[] = [];
  if (text.includes('\0')) {
    problems.push({ file, line: 0, message: 'file contains a NUL byte' });
    return { vars, problems };
  }
  const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split('\n');
  lines.forEach((raw0, i) => {
    const line = i + 1;
    const raw = raw0.endsWith('\r') ? raw0.slice(0, -1) : raw0;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(raw);
    if (!m) {
      problems.push({ file, line, message: 'expected `export NAME="value"`' });
      return;
    }
    const name = m[1]!;
    const r = readShellWord(m[2]!);
    if ('error' in r) {
      problems.push({ file, line, field: name, message: r.error });
      return;
    }
    vars.set(name, r.value);
  });
  return { vars, problems };
}

function readShellWord(s: string): { value: string } | { error: string } {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t') {
      const rest = s.slice(i).trim();
      if (rest === '' || rest.startsWith('#')) break;
      return { error: 'unexpected text after the value (quote values that contain spaces)' };
    }
    if (c === '"') {
      i++;
      let closed = false;
      while (i < s.length) {
        const d = s[i]!;
        if (d === '"') { closed = true; i++; break; }
        if (d === '\\') {
          const e = s[i + 1];
          if (e === undefined) return { error: 'value continues on the next line (newlines are not allowed in values)' };
          if (e === '\\' || e === '"' || e === '$' || e === '`') { out += e; i += 2; continue; }
          out += d;
          i++;
          continue;
        }
        if (d === '$' || d === '`') return { error: 'value uses shell expansion ($ or backquote) inside double quotes: kb does not run scripts; escape it or write the literal value' };
        out += d;
        i++;
      }
      if (!closed) return { error: 'unterminated double quote (newlines are not allowed in values)' };
      continue;
    }
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) return { error: 'unterminated single quote (newlines are not allowed in values)' };
      out += s.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    if (c === '\\') {
      const e = s[i + 1];
      if (e === undefined) return { error: 'value continues on the next line (newlines are not allowed in values)' };
      out += e;
      i += 2;
      continue;
    }
    if ('$`;&|<>()'.includes(c)) return { error: `unquoted "${c}" in the value: kb does not run scripts; quote the value` };
    out += c;
    i++;
  }
  return { value: out };
}
