/**
 * Finds values that look like secrets in files that must never hold one (servers.tsv,
 * versions.yaml, module settings): KEYBUZZ.md puts credentials only in the credentials
 * directory, generated and delivered by kb. Used by `kbctl validate` and by the planner
 * (a secret in module settings would end up in plan records).
 *
 * Findings say what was recognised ("a password assignment", "a private key"), never the
 * value. The rules aim at real mistakes (a password pasted in NOTES, a token in a URL) and
 * stay quiet on the real inventory, image references and digests.
 */

/** Key names that announce a secret: password, passwd, pwd, mdp (fr.), secret, token, api key, auth pass, cookie... */
const SECRET_KEY = /(?:^|[^a-z])(?:pass|pwd|mdp)(?:[^a-z]|$)|pass(?:word|wd|phrase)|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|requirepass|masterauth|cookie/i;

/** True when a settings key or a `key=value` key names a secret. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

const PATTERNS: readonly { re: RegExp; what: string }[] = [
  { re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, what: 'a private key' },
  { re: /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i, what: 'credentials in a URL (user:password@host)' },
  { re: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/, what: 'an AWS access key' },
  { re: /\bK10[0-9a-f]{64}::/, what: 'a k3s join token' },
  { re: /\b(?:ghp_|gho_|ghs_|github_pat_|glpat-|xox[abp]-|sk-)[A-Za-z0-9_-]{16,}/, what: 'an API token' },
  { re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./, what: 'a JSON web token' },
  { re: /(?:^|[\s,;(])--?(?:requirepass|masterauth|password|pass|auth)(?:[=\s]+)\S/i, what: 'a password given as a command-line option' },
];

/** `key=value` / `key: value` where the key names a secret (password=..., mdp: ..., token=...). */
const ASSIGNMENT = /(?:^|[\s,;(])([A-Za-z][A-Za-z0-9_.-]*)\s*[:=]\s*\S/g;

/** Runs of characters a generated password or key is made of. */
const RANDOM_RUN = /[A-Za-z0-9+/_=-]{24,}/g;

/** What was recognised (printable) and the text that matched (never printed: callers register it for scrubbing). */
export interface SecretMatch { what: string; match: string }

/**
 * What in `text` looks like a secret, or undefined. `match` is the offending text, for the
 * scrubber only (never print it).
 */
export function findSecretLooking(text: string): SecretMatch | undefined {
  for (const p of PATTERNS) {
    const m = p.re.exec(text);
    if (m) return { what: p.what, match: m[0].trim() };
  }
  for (const m of text.matchAll(ASSIGNMENT)) {
    if (isSecretKey(m[1]!)) {
      const rest = text.slice(m.index + m[0].length - 1).split(/[\s,;)]/)[0] ?? '';
      return { what: `a credential assignment (${m[1]}=...)`, match: rest };
    }
  }
  for (const m of text.matchAll(RANDOM_RUN)) {
    if (looksRandom(m[0])) return { what: 'a long random-looking string (a password, token or key)', match: m[0] };
  }
  return undefined;
}

/** What in `text` looks like a secret (see findSecretLooking), or undefined. */
export function secretLooking(text: string): string | undefined {
  return findSecretLooking(text)?.what;
}

/** Upper case, lower case and digits all present, and high character entropy. */
function looksRandom(s: string): boolean {
  if (!/[A-Z]/.test(s) || !/[a-z]/.test(s) || !/[0-9]/.test(s)) return false;
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h >= 3.5;
}

/** A finding in a structured value (settings): dotted path and what was recognised. */
export interface SecretFinding { path: string; what: string; /** The offending text: for the scrubber, never printed. */ match: string }

/**
 * Walks a parsed settings value (maps, lists, scalars) and reports secret-looking entries:
 * a key naming a secret with a non-empty value, a string that looks like a secret, and in a
 * list of arguments a flag naming a secret followed by a value (`["--requirepass", "x"]`).
 */
export function findSecretsInValue(value: unknown, path = ''): SecretFinding[] {
  const out: SecretFinding[] = [];
  const at = (k: string | number) => (path === '' ? String(k) : typeof k === 'number' ? `${path}[${k}]` : `${path}.${k}`);
  if (typeof value === 'string') {
    const m = findSecretLooking(value);
    if (m) out.push({ path, ...m });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      const prev = value[i - 1];
      if (typeof prev === 'string' && /^--?[A-Za-z]/.test(prev) && isSecretKey(prev.replace(/^-+/, '')) && v !== '' && v != null) {
        out.push({ path: at(i), what: `a credential passed as ${prev.split('=')[0]}`, match: String(v) });
      } else {
        out.push(...findSecretsInValue(v, at(i)));
      }
    });
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (isSecretKey(k) && v !== '' && v != null && typeof v !== 'boolean') out.push({ path: at(k), what: `a credential setting (${k})`, match: typeof v === 'string' ? v : JSON.stringify(v) });
      else out.push(...findSecretsInValue(v, at(k)));
    }
  }
  return out;
}
