/**
 * versions.yaml: the pinned image tags and k3s version (see KEYBUZZ.md "Pinned versions").
 *
 * The file is a flat `key: value` map and is read line by line (not as general YAML) so that
 * every entry keeps its line number and a trailing `# comment` is never part of the value
 * (the old shell loader's bug). Supported values: plain, "double-quoted" (backslash escapes)
 * and 'single-quoted' ('' escape). Comment lines, blank lines and a `---` marker are skipped.
 *
 * `checkVersions` returns problems instead of throwing; `parseVersions` / `loadVersions`
 * throw one `InputError` with all of them. All functions are pure except `load*`/`*File`.
 */
import { readFileSync } from 'node:fs';
import { InputError, errorMessage, type Problem } from '../errors/index.js';

export interface VersionEntry {
  key: string;
  /** The value without quotes and without a trailing comment. */
  value: string;
  /** 1-based line in the file. */
  line: number;
  /** Text of a trailing `# comment` on the same line, without '#', trimmed. */
  comment?: string;
}

export interface Versions {
  file: string;
  /**
   * Entries in file order. Holds every line that parsed as `key: value` with a known key
   * shape (first occurrence wins on duplicates), including entries whose value has a problem.
   */
  entries: Map<string, VersionEntry>;
}

/** The key holding the k3s release (not an image). */
export const K3S_VERSION_KEY = 'k3s_version';

const IMAGE_KEY = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*_image$/;
const K3S_VERSION = /^v\d+\.\d+\.\d+\+k3s\d+$/;
const LINE = /^([^\s:#'"]+):(?:\s+(.*))?$/;

/** Checks versions.yaml content; returns every problem (file:line) instead of throwing. */
export function checkVersions(text: string, file: string): { versions: Versions; problems: Problem[] } {
  const problems: Problem[] = [];
  const entries = new Map<string, VersionEntry>();
  const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split(/\r?\n/);

  lines.forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed === '---') return;
    const m = /^\s/.test(raw) ? null : LINE.exec(raw.trimEnd());
    if (!m) {
      problems.push({ file, line, message: 'expected `key: value` (versions.yaml is a flat map, one key per line)' });
      return;
    }
    const key = m[1] ?? '';
    if (!IMAGE_KEY.test(key) && key !== K3S_VERSION_KEY) {
      problems.push({ file, line, field: key, message: 'unknown key (keys are <component>_image or k3s_version)' });
      return;
    }
    const parsed = parseValue(m[2] ?? '');
    if ('error' in parsed) {
      problems.push({ file, line, field: key, message: parsed.error });
      return;
    }
    const first = entries.get(key);
    if (first) {
      problems.push({ file, line, field: key, message: `duplicate key (first on line ${first.line})` });
      return;
    }
    const entry: VersionEntry = { key, value: parsed.value, line };
    if (parsed.comment !== undefined) entry.comment = parsed.comment;
    entries.set(key, entry);

    const problem = parsed.value === ''
      ? 'empty value'
      : key === K3S_VERSION_KEY ? checkK3sVersion(parsed.value) : checkImageRef(parsed.value);
    if (problem) problems.push({ file, line, field: key, message: problem });
  });

  return { versions: { file, entries }, problems };
}

/** Like `checkVersions`, but throws an `InputError` listing every problem. */
export function parseVersions(text: string, file: string): Versions {
  const { versions, problems } = checkVersions(text, file);
  if (problems.length > 0) throw new InputError(problems);
  return versions;
}

/** Reads and checks a versions.yaml file; a file that cannot be read is one problem on line 0. */
export function checkVersionsFile(file: string): { versions: Versions; problems: Problem[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'file not found' : `cannot read file: ${errorMessage(err)}`;
    return { versions: { file, entries: new Map() }, problems: [{ file, line: 0, message }] };
  }
  return checkVersions(text, file);
}

/** Reads and parses a versions.yaml file; throws `InputError`. */
export function loadVersions(file: string): Versions {
  const { versions, problems } = checkVersionsFile(file);
  if (problems.length > 0) throw new InputError(problems);
  return versions;
}

/**
 * The pinned image of a component: `imageFor(v, 'redis')` is the value of `redis_image`
 * ('-' in the component name reads as '_': 'mariadb-galera' -> `mariadb_galera_image`).
 * Throws `InputError` (line 1 of the versions file) when the key is missing.
 */
export function imageFor(v: Versions, component: string): string {
  const key = `${component.replaceAll('-', '_')}_image`;
  const entry = v.entries.get(key);
  if (!entry) throw new InputError([{ file: v.file, line: 1, message: `${key} is missing` }]);
  return entry.value;
}

/**
 * Shell lines `export REDIS_IMAGE="redis:7.2.5-alpine"`, one per entry in file order, keys
 * uppercased, values double-quoted with `\`, `"`, `$` and backquote escaped. Ends with a
 * newline unless there are no entries.
 */
export function shellExports(v: Versions): string {
  const lines = [...v.entries.values()].map((e) => `export ${e.key.toUpperCase()}=${shellQuote(e.value)}`);
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/**
 * Splits an image reference into repository, tag and digest. Does not validate. The tag is
 * the part after the last ':' that follows the last '/', so a registry port is never taken
 * for a tag: '127.0.0.1:5000/kb/redis:7.0-kb1' -> repository '127.0.0.1:5000/kb/redis',
 * tag '7.0-kb1'. Absent parts are omitted.
 */
export function splitImageRef(ref: string): { repository: string; tag?: string; digest?: string } {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const out: { repository: string; tag?: string; digest?: string } = { repository: rest };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const REGISTRY_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * Why an image reference is not pinned or not well-formed, or undefined when it is fine.
 * Pinned means a tag other than `latest`, or a sha256 digest.
 */
export function checkImageRef(ref: string): string | undefined {
  const { repository, tag, digest } = splitImageRef(ref);
  const parts = repository.split('/');
  const first = parts[0] ?? '';
  const hasHost = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const path = hasHost ? parts.slice(1) : parts;
  if ((hasHost && !REGISTRY_HOST.test(first)) || path.length === 0 || !path.every((p) => PATH_COMPONENT.test(p))) {
    return `invalid image reference ${JSON.stringify(ref)}`;
  }
  if (digest !== undefined && !DIGEST.test(digest)) {
    return `invalid digest ${JSON.stringify(digest)} (expected sha256:<64 hex digits>)`;
  }
  if (tag !== undefined && !TAG.test(tag)) return `invalid tag ${JSON.stringify(tag)}`;
  if (tag === undefined && digest === undefined) {
    return `no tag: ${JSON.stringify(ref)} is not pinned (add :<version> or @sha256:<digest>)`;
  }
  if (tag === 'latest' && digest === undefined) return "'latest' is not a pinned version";
  return undefined;
}

function checkK3sVersion(value: string): string | undefined {
  if (value === 'latest' || value === 'stable') return `'${value}' is not a pinned version`;
  if (!K3S_VERSION.test(value)) return `${JSON.stringify(value)} must look like v1.33.5+k3s1`;
  return undefined;
}

/** Escapes accepted inside a double-quoted value (a subset of YAML's). */
const DQ_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', n: '\n', t: '\t', '0': '\0' };

type ParsedValue = { value: string; comment?: string } | { error: string };

/** Parses the text after `key:`: a plain, double- or single-quoted scalar plus an optional `# comment`. */
function parseValue(text: string): ParsedValue {
  let value: string;
  let after: string;
  if (text.startsWith('"')) {
    let out = '';
    let i = 1;
    for (; i < text.length && text[i] !== '"'; i++) {
      const c = text[i] ?? '';
      if (c !== '\\') {
        out += c;
        continue;
      }
      const next = text[++i];
      if (next === undefined) break;
      const decoded = DQ_ESCAPES[next];
      if (decoded === undefined) return { error: `unsupported escape \\${next} in a quoted value` };
      out += decoded;
    }
    if (i >= text.length) return { error: 'unterminated double-quoted value' };
    value = out;
    after = text.slice(i + 1);
  } else if (text.startsWith("'")) {
    // Single-quoted: no escapes except '' for one quote.
    const m = /^'((?:[^']|'')*)'/.exec(text);
    if (!m) return { error: 'unterminated single-quoted value' };
    value = (m[1] ?? '').replaceAll("''", "'");
    after = text.slice(m[0].length);
  } else {
    // Plain scalar: a comment starts at a '#' preceded by whitespace (or at the start).
    const m = /(?:^|\s)#/.exec(text);
    value = (m ? text.slice(0, m.index) : text).trim();
    after = m ? text.slice(m.index) : '';
    if (/^[[\]{}|>&*!%@`]/.test(value)) {
      return { error: `expected a plain string value, found ${JSON.stringify(value)} (quote it)` };
    }
  }
  const rest = after.trim();
  if (rest === '') return { value };
  if (!rest.startsWith('#')) return { error: `unexpected text after the value: ${JSON.stringify(rest)}` };
  const comment = rest.slice(1).trim();
  return comment === '' ? { value } : { value, comment };
}

function shellQuote(value: string): string {
  return `"${value.replace(/["\\$`]/g, (c) => `\\${c}`)}"`;
}
