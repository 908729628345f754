// test/tmp-plan/plan.ts
import { writeFileSync, readFileSync } from "node:fs";

// shared/errors/index.ts
var KbError = class extends Error {
  name = "KbError";
  constructor(message, options) {
    super(message, options);
  }
};
function formatProblem(p) {
  const where = p.column ? `${p.file}:${p.line}:${p.column}` : `${p.file}:${p.line}`;
  return `${where}: ${p.field ? `${p.field}: ` : ""}${p.message}`;
}
var InputError = class extends KbError {
  constructor(problems, options) {
    super(problems.map(formatProblem).join("\n"), options);
    this.problems = problems;
  }
  problems;
  name = "InputError";
};
var UnknownModuleError = class extends KbError {
  constructor(module, known) {
    super(`unknown module "${module}" (known modules: ${known.join(", ")})`);
    this.module = module;
  }
  module;
  name = "UnknownModuleError";
};

// shared/versions/index.ts
var K3S_VERSION_KEY = "k3s_version";
var IMAGE_KEY = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*_image$/;
var K3S_VERSION = /^v\d+\.\d+\.\d+\+k3s\d+$/;
var LINE = /^([^\s:#'"]+):(?:\s+(.*))?$/;
function checkVersions(text, file) {
  const problems = [];
  const entries = /* @__PURE__ */ new Map();
  const lines = (text.charCodeAt(0) === 65279 ? text.slice(1) : text).split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed === "---") return;
    const m = /^\s/.test(raw) ? null : LINE.exec(raw.trimEnd());
    if (!m) {
      problems.push({ file, line, message: "expected `key: value` (versions.yaml is a flat map, one key per line)" });
      return;
    }
    const key = m[1] ?? "";
    if (!IMAGE_KEY.test(key) && key !== K3S_VERSION_KEY) {
      problems.push({ file, line, field: key, message: "unknown key (keys are <component>_image or k3s_version)" });
      return;
    }
    const parsed = parseValue(m[2] ?? "");
    if ("error" in parsed) {
      problems.push({ file, line, field: key, message: parsed.error });
      return;
    }
    const first = entries.get(key);
    if (first) {
      problems.push({ file, line, field: key, message: `duplicate key (first on line ${first.line})` });
      return;
    }
    const entry = { key, value: parsed.value, line };
    if (parsed.comment !== void 0) entry.comment = parsed.comment;
    entries.set(key, entry);
    const problem = parsed.value === "" ? "empty value" : key === K3S_VERSION_KEY ? checkK3sVersion(parsed.value) : checkImageRef(parsed.value);
    if (problem) problems.push({ file, line, field: key, message: problem });
  });
  return { versions: { file, entries }, problems };
}
function parseVersions(text, file) {
  const { versions: versions2, problems } = checkVersions(text, file);
  if (problems.length > 0) throw new InputError(problems);
  return versions2;
}
function imageFor(v, component) {
  const key = `${component.replaceAll("-", "_")}_image`;
  const entry = v.entries.get(key);
  if (!entry) throw new InputError([{ file: v.file, line: 1, message: `${key} is missing` }]);
  return entry.value;
}
function splitImageRef(ref) {
  let rest = ref;
  let digest;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const out = { repository: rest };
  if (tag !== void 0) out.tag = tag;
  if (digest !== void 0) out.digest = digest;
  return out;
}
var PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
var REGISTRY_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/;
var TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
var DIGEST = /^sha256:[0-9a-f]{64}$/;
function checkImageRef(ref) {
  const { repository, tag, digest } = splitImageRef(ref);
  const parts = repository.split("/");
  const first = parts[0] ?? "";
  const hasHost = parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost");
  const path = hasHost ? parts.slice(1) : parts;
  if (hasHost && !REGISTRY_HOST.test(first) || path.length === 0 || !path.every((p) => PATH_COMPONENT.test(p))) {
    return `invalid image reference ${JSON.stringify(ref)}`;
  }
  if (digest !== void 0 && !DIGEST.test(digest)) {
    return `invalid digest ${JSON.stringify(digest)} (expected sha256:<64 hex digits>)`;
  }
  if (tag !== void 0 && !TAG.test(tag)) return `invalid tag ${JSON.stringify(tag)}`;
  if (tag === void 0 && digest === void 0) {
    return `no tag: ${JSON.stringify(ref)} is not pinned (add :<version> or @sha256:<digest>)`;
  }
  if (tag === "latest" && digest === void 0) return "'latest' is not a pinned version";
  return void 0;
}
function checkK3sVersion(value) {
  if (value === "latest" || value === "stable") return `'${value}' is not a pinned version`;
  if (!K3S_VERSION.test(value)) return `${JSON.stringify(value)} must look like v1.33.5+k3s1`;
  return void 0;
}
var DQ_ESCAPES = { '"': '"', "\\": "\\", "/": "/", n: "\n", t: "	", "0": "\0" };
function parseValue(text) {
  let value;
  let after;
  if (text.startsWith('"')) {
    let out = "";
    let i = 1;
    for (; i < text.length && text[i] !== '"'; i++) {
      const c = text[i] ?? "";
      if (c !== "\\") {
        out += c;
        continue;
      }
      const next = text[++i];
      if (next === void 0) break;
      const decoded = DQ_ESCAPES[next];
      if (decoded === void 0) return { error: `unsupported escape \\${next} in a quoted value` };
      out += decoded;
    }
    if (i >= text.length) return { error: "unterminated double-quoted value" };
    value = out;
    after = text.slice(i + 1);
  } else if (text.startsWith("'")) {
    const m = /^'((?:[^']|'')*)'/.exec(text);
    if (!m) return { error: "unterminated single-quoted value" };
    value = (m[1] ?? "").replaceAll("''", "'");
    after = text.slice(m[0].length);
  } else {
    const m = /(?:^|\s)#/.exec(text);
    value = (m ? text.slice(0, m.index) : text).trim();
    after = m ? text.slice(m.index) : "";
    if (/^[[\]{}|>&*!%@`]/.test(value)) {
      return { error: `expected a plain string value, found ${JSON.stringify(value)} (quote it)` };
    }
  }
  const rest = after.trim();
  if (rest === "") return { value };
  if (!rest.startsWith("#")) return { error: `unexpected text after the value: ${JSON.stringify(rest)}` };
  const comment = rest.slice(1).trim();
  return comment === "" ? { value } : { value, comment };
}

// shared/plan/hash.ts
import { createHash } from "node:crypto";
function canonicalJson(value) {
  return JSON.stringify(normalize(value));
}
function normalize(value) {
  if (Buffer.isBuffer(value)) return { $b64: value.toString("base64") };
  if (value instanceof Uint8Array) return { $b64: Buffer.from(value).toString("base64") };
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      const v = value[key];
      if (v !== void 0) out[key] = normalize(v);
    }
    return out;
  }
  return value;
}
function sha256Hex(text) {
  return createHash("sha256").update(text).digest("hex");
}
function moduleSpecHash(s) {
  return sha256Hex(canonicalJson({
    module: s.module,
    containers: s.containers,
    files: s.files,
    healthChecks: s.healthChecks,
    ...s.redisFollower ? { redisFollower: s.redisFollower } : {},
    ...s.secrets?.length ? { secrets: s.secrets } : {},
    ...s.secretFiles?.length ? { secretFiles: s.secretFiles } : {}
  }));
}
function withSpecHash(state) {
  return { ...state, specHash: moduleSpecHash(state) };
}

// shared/credentials/catalog.ts
var CREDENTIALS_DIR = "/opt/keybuzz-installer/credentials";
var pw = (name) => ({ name, secret: true, kind: "password" });
var fixed = (name, value) => ({ name, secret: false, kind: "fixed", value });
var CREDENTIALS = [
  {
    name: "postgres",
    file: "postgres.env",
    description: "PostgreSQL/Patroni superuser, replication and application users; Patroni REST API password",
    vars: [
      fixed("POSTGRES_SUPERUSER", "kb_admin"),
      pw("POSTGRES_SUPERPASS"),
      fixed("POSTGRES_REPL_USER", "kb_repl"),
      pw("POSTGRES_REPL_PASS"),
      fixed("POSTGRES_APP_USER", "kb_app"),
      pw("POSTGRES_APP_PASS"),
      fixed("POSTGRES_DB", "keybuzz"),
      fixed("PATRONI_CLUSTER_NAME", "keybuzz-pg"),
      pw("PATRONI_API_PASSWORD")
    ],
    // PgBouncer on the internal HAProxy hosts authenticates application users.
    roles: [{ role: "db", subrole: "postgres" }, { role: "lb", subrole: "internal-haproxy" }]
  },
  {
    name: "redis",
    file: "redis.env",
    description: "Redis and Sentinel passwords, Sentinel master name and quorum",
    vars: [pw("REDIS_PASSWORD"), pw("REDIS_SENTINEL_PASSWORD"), fixed("REDIS_MASTER_NAME", "kb-redis-master"), fixed("REDIS_SENTINEL_QUORUM", "2")],
    roles: [{ role: "redis" }, { role: "lb", subrole: "internal-haproxy" }]
  },
  {
    name: "rabbitmq",
    file: "rabbitmq.env",
    description: "RabbitMQ user, password and Erlang cookie",
    vars: [fixed("RABBITMQ_USER", "kb_rmq"), pw("RABBITMQ_PASSWORD"), { name: "RABBITMQ_ERLANG_COOKIE", secret: true, kind: "token" }],
    roles: [{ role: "queue", subrole: "rabbitmq" }]
  },
  {
    name: "minio",
    file: "minio.env",
    description: "MinIO root user and password (the same on every MinIO node), backup bucket",
    vars: [{ name: "MINIO_ROOT_USER", secret: true, kind: "user", value: "kb-minio-" }, pw("MINIO_ROOT_PASSWORD"), fixed("MINIO_BUCKET", "keybuzz-backups")],
    roles: [{ role: "storage", subrole: "minio" }]
  },
  {
    name: "mariadb",
    file: "mariadb.env",
    description: "MariaDB Galera root and application passwords",
    vars: [pw("MARIADB_ROOT_PASSWORD"), fixed("MARIADB_APP_USER", "erpnext"), pw("MARIADB_APP_PASSWORD"), fixed("MARIADB_DB", "erpnext"), fixed("GALERA_CLUSTER_NAME", "keybuzz-galera")],
    // ProxySQL needs the application user to route it and the monitor credentials.
    roles: [{ role: "db", subrole: "mariadb" }, { role: "db_proxy" }]
  },
  {
    name: "proxysql",
    file: "proxysql.env",
    description: "ProxySQL admin interface user and password (never admin:admin)",
    vars: [{ name: "PROXYSQL_ADMIN_USER", secret: false, kind: "user", value: "kb-proxysql-" }, pw("PROXYSQL_ADMIN_PASSWORD")],
    roles: [{ role: "db_proxy" }]
  },
  {
    name: "k3s",
    file: "k3s.env",
    description: "K3s cluster join token",
    vars: [{ name: "K3S_TOKEN", secret: true, kind: "token" }],
    roles: [{ role: "k3s" }]
  }
];
function findCredential(name) {
  return CREDENTIALS.find((c) => c.name === name);
}
function mayReceive(spec, server) {
  return spec.roles.some((r) => r.role === server.role && (r.subrole === void 0 || r.subrole === server.subrole));
}
var SECRET_VAR_NAMES = CREDENTIALS.flatMap((c) => c.vars.filter((v) => v.secret).map((v) => v.name));

// shared/credentials/template.ts
var TEMPLATE_FUNCTIONS = ["raw", "shell", "redis", "sha256"];
var TOKEN = /\{\{\s*([a-z0-9]+)\s+([a-z][a-z0-9-]*)@(\d+)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
var TemplateError = class extends Error {
  name = "TemplateError";
};
function templateRefs(template) {
  const refs = [];
  const rest = template.replace(TOKEN, (_m, fn, name, version, variable) => {
    if (!TEMPLATE_FUNCTIONS.includes(fn)) throw new TemplateError(`unknown template function "${fn}" (known: ${TEMPLATE_FUNCTIONS.join(", ")})`);
    refs.push({ fn, name, version: Number(version), variable });
    return "";
  });
  const stray = rest.indexOf("{{");
  if (stray >= 0) throw new TemplateError(`malformed reference at "${rest.slice(stray, stray + 40).split("\n")[0]}" (expected {{fn name@version VAR}})`);
  return refs;
}

// shared/credentials/scan.ts
var SECRET_KEY = /(?:^|[^a-z])(?:pass|pwd|mdp)(?:[^a-z]|$)|pass(?:word|wd|phrase)|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|requirepass|masterauth|cookie/i;
function isSecretKey(key) {
  return SECRET_KEY.test(key);
}
var PATTERNS = [
  { re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, what: "a private key" },
  { re: /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i, what: "credentials in a URL (user:password@host)" },
  { re: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/, what: "an AWS access key" },
  { re: /\bK10[0-9a-f]{64}::/, what: "a k3s join token" },
  { re: /\b(?:ghp_|gho_|ghs_|github_pat_|glpat-|xox[abp]-|sk-)[A-Za-z0-9_-]{16,}/, what: "an API token" },
  { re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./, what: "a JSON web token" },
  { re: /(?:^|[\s,;(])--?(?:requirepass|masterauth|password|pass|auth)(?:[=\s]+)\S/i, what: "a password given as a command-line option" }
];
var ASSIGNMENT = /(?:^|[\s,;(])([A-Za-z][A-Za-z0-9_.-]*)\s*[:=]\s*\S/g;
var RANDOM_RUN = /[A-Za-z0-9+/_=-]{24,}/g;
function findSecretLooking(text) {
  for (const p of PATTERNS) {
    const m = p.re.exec(text);
    if (m) return { what: p.what, match: m[0].trim() };
  }
  for (const m of text.matchAll(ASSIGNMENT)) {
    if (isSecretKey(m[1])) {
      const rest = text.slice(m.index + m[0].length - 1).split(/[\s,;)]/)[0] ?? "";
      return { what: `a credential assignment (${m[1]}=...)`, match: rest };
    }
  }
  for (const m of text.matchAll(RANDOM_RUN)) {
    if (looksRandom(m[0])) return { what: "a long random-looking string (a password, token or key)", match: m[0] };
  }
  return void 0;
}
function looksRandom(s) {
  if (!/[A-Z]/.test(s) || !/[a-z]/.test(s) || !/[0-9]/.test(s)) return false;
  const counts = /* @__PURE__ */ new Map();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n2 of counts.values()) {
    const p = n2 / s.length;
    h -= p * Math.log2(p);
  }
  return h >= 3.5;
}
function findSecretsInValue(value, path = "") {
  const out = [];
  const at = (k) => path === "" ? String(k) : typeof k === "number" ? `${path}[${k}]` : `${path}.${k}`;
  if (typeof value === "string") {
    const m = findSecretLooking(value);
    if (m) out.push({ path, ...m });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      const prev = value[i - 1];
      if (typeof prev === "string" && /^--?[A-Za-z]/.test(prev) && isSecretKey(prev.replace(/^-+/, "")) && v !== "" && v != null) {
        out.push({ path: at(i), what: `a credential passed as ${prev.split("=")[0]}`, match: String(v) });
      } else {
        out.push(...findSecretsInValue(v, at(i)));
      }
    });
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (isSecretKey(k) && v !== "" && v != null && typeof v !== "boolean") out.push({ path: at(k), what: `a credential setting (${k})`, match: typeof v === "string" ? v : JSON.stringify(v) });
      else out.push(...findSecretsInValue(v, at(k)));
    }
  }
  return out;
}

// shared/log/index.ts
import { pino } from "pino";

// shared/log/scrub.ts
var values = /* @__PURE__ */ new Set();
var MIN_LENGTH = 8;
var pattern;
function registerSecretValues(list) {
  let changed = false;
  for (const v of list) {
    if (v.length >= MIN_LENGTH && !values.has(v)) {
      values.add(v);
      changed = true;
    }
  }
  if (changed) pattern = void 0;
}

// shared/log/index.ts
function anyDepth(names) {
  return names.flatMap((n2) => [n2, `*.${n2}`, `*.*.${n2}`]);
}
var REDACT_PATHS = [
  ...anyDepth(["password", "token", "secret", "secretValues", "vars", "authorization", "masterauth", "requirepass"]),
  "env",
  "*.env",
  "*.*.env",
  "*.containers[*].env",
  "*.*.containers[*].env",
  "content",
  "*.content",
  "*.files[*].content",
  "*.*.files[*].content",
  "headers.authorization",
  ...anyDepth(SECRET_VAR_NAMES)
];

// coordinator/modules/settings-file.ts
import { LineCounter, parseDocument, isMap, isPair, isScalar } from "yaml";
function parseSettings(text, file, knownModules) {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const problems = [];
  const lineOf = (n2) => n2?.range ? lc.linePos(n2.range[0]).line : 1;
  for (const e of doc.errors) problems.push({ file, line: e.linePos?.[0]?.line ?? 1, message: e.message.split("\n")[0] ?? e.message });
  if (problems.length) throw new InputError(problems);
  const out = {};
  const root = doc.contents;
  if (root == null || isScalar(root) && root.value == null) return out;
  if (!isMap(root)) throw new InputError([{ file, line: lineOf(root), message: "expected a map of module name -> settings" }]);
  for (const item of root.items) {
    if (!isPair(item)) continue;
    const key = isScalar(item.key) ? String(item.key.value) : "";
    const line = lineOf(item.key);
    if (!knownModules.includes(key)) {
      problems.push({ file, line, field: key, message: `unknown module (known modules: ${knownModules.join(", ")})` });
      continue;
    }
    const value = item.value == null ? {} : item.value.toJSON();
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      problems.push({ file, line, field: key, message: "expected a map of settings" });
      continue;
    }
    const { nodes = {}, ...values2 } = value;
    if (typeof nodes !== "object" || nodes === null || Array.isArray(nodes)) {
      problems.push({ file, line, field: `${key}.nodes`, message: "expected a map of node name -> settings" });
      continue;
    }
    out[key] = { file, values: values2, nodes };
  }
  if (problems.length) throw new InputError(problems);
  return out;
}
function emptySettings(file) {
  return { file, values: {}, nodes: {} };
}

// shared/inventory/fields.ts
var OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
function isIPv4(value) {
  const parts = value.split(".");
  return parts.length === 4 && parts.every((p) => OCTET.test(p) && Number(p) <= 255);
}
var DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
function isDnsLabel(value) {
  return DNS_LABEL.test(value);
}

// shared/inventory/index.ts
var INVENTORY_COLUMNS = [
  "ENV",
  "IP_PUBLIQUE",
  "HOSTNAME",
  "IP_PRIVEE",
  "FQDN",
  "USER_SSH",
  "POOL",
  "ROLE",
  "SUBROLE",
  "DOCKER_STACK",
  "CORE",
  "NOTES"
];
var DEFAULT_ENV = "prod";
var NO_MINIO_HOSTS = ["k8s-worker-05", "k3s-worker-05"];
function checkInventory(text, file, opts = {}) {
  const env = opts.env ?? DEFAULT_ENV;
  const problems = [];
  const inventory2 = { file, servers: [] };
  const lines = stripBom(text).split(/\r?\n/);
  const headerLine = lines[0] ?? "";
  if (headerLine.trim() === "") {
    problems.push({ file, line: 1, message: `empty header: expected the columns ${INVENTORY_COLUMNS.join(", ")}` });
    return { inventory: inventory2, problems };
  }
  const header = headerLine.split("	").map((h) => h.trim());
  const found = /* @__PURE__ */ new Map();
  header.forEach((name, i) => {
    const first = found.get(name);
    if (first === void 0) found.set(name, i);
    else if (isInventoryColumn(name)) {
      problems.push({ file, line: 1, column: i + 1, message: `duplicate column "${name}" (first at column ${first + 1})` });
    }
  });
  const pos = {};
  for (const name of INVENTORY_COLUMNS) {
    const i = found.get(name);
    if (i === void 0) problems.push({ file, line: 1, message: `missing required column "${name}"` });
    else pos[name] = i;
  }
  if (problems.length > 0) return { inventory: inventory2, problems };
  const notesLast = pos.NOTES === header.length - 1;
  const all = [];
  for (let i = 1; i < lines.length; i++) {
    const raw = lines[i] ?? "";
    if (raw.trim() === "") continue;
    const line = i + 1;
    let fields = raw.split("	");
    if (fields.length < header.length || fields.length > header.length && !notesLast) {
      problems.push({ file, line, message: `expected ${header.length} columns, found ${fields.length}` });
      continue;
    }
    if (fields.length > header.length) {
      fields = [...fields.slice(0, header.length - 1), fields.slice(header.length - 1).join("	")];
    }
    const get = (c) => (fields[pos[c]] ?? "").trim();
    const report = (c, message) => {
      problems.push({ file, line, column: pos[c] + 1, field: c, message });
    };
    const server = {
      env: get("ENV"),
      publicIp: get("IP_PUBLIQUE"),
      hostname: get("HOSTNAME"),
      privateIp: get("IP_PRIVEE"),
      fqdn: get("FQDN"),
      userSsh: get("USER_SSH"),
      pool: get("POOL"),
      role: get("ROLE"),
      subrole: get("SUBROLE"),
      dockerStack: get("DOCKER_STACK"),
      core: get("CORE") === "yes",
      notes: get("NOTES"),
      line
    };
    if (server.env === "") report("ENV", "must not be empty");
    if (server.publicIp === "-") server.publicIp = "";
    else if (server.publicIp !== "" && !isIPv4(server.publicIp)) {
      report("IP_PUBLIQUE", `invalid IPv4 address ${JSON.stringify(server.publicIp)} (leave it empty or '-' when there is none)`);
    }
    if (server.hostname === "") report("HOSTNAME", "must not be empty");
    else if (!isDnsLabel(server.hostname)) {
      report("HOSTNAME", `${JSON.stringify(server.hostname)} is not a valid DNS label (lowercase letters, digits and '-', at most 63 characters)`);
    }
    if (server.privateIp === "") report("IP_PRIVEE", "must not be empty");
    else if (!isIPv4(server.privateIp)) report("IP_PRIVEE", `invalid IPv4 address ${JSON.stringify(server.privateIp)}`);
    const core = get("CORE");
    if (core !== "yes" && core !== "no") report("CORE", `must be "yes" or "no", found ${JSON.stringify(core)}`);
    all.push(server);
  }
  inventory2.servers = env === "*" ? all : all.filter((s) => s.env === env);
  problems.push(...checkKeptRows(inventory2.servers, file, pos));
  problems.sort((a, b) => a.line - b.line || (a.column ?? 0) - (b.column ?? 0));
  return { inventory: inventory2, problems };
}
function checkKeptRows(servers, file, pos) {
  const problems = [];
  const at = (s, c, message) => ({ file, line: s.line, column: pos[c] + 1, field: c, message });
  const byHost = /* @__PURE__ */ new Map();
  const byIp = /* @__PURE__ */ new Map();
  for (const s of servers) {
    if (s.hostname !== "") {
      const first = byHost.get(s.hostname);
      if (first) problems.push(at(s, "HOSTNAME", `duplicate hostname "${s.hostname}" (first on line ${first.line})`));
      else byHost.set(s.hostname, s);
    }
    if (s.privateIp !== "") {
      const first = byIp.get(s.privateIp);
      if (first) {
        problems.push(at(s, "IP_PRIVEE", `duplicate private IP ${s.privateIp} (first on line ${first.line}, ${first.hostname})`));
      } else byIp.set(s.privateIp, s);
    }
  }
  const masters = servers.filter((s) => s.role === "redis" && s.subrole === "master");
  const second = masters[1];
  if (second) {
    const list = masters.map((s) => `${s.hostname} (line ${s.line})`).join(", ");
    problems.push(at(second, "SUBROLE", `more than one Redis master: ${list}`));
  }
  for (const s of servers) {
    if (!NO_MINIO_HOSTS.includes(s.hostname)) continue;
    if (s.role === "storage") problems.push(at(s, "ROLE", `${s.hostname} must never host MinIO (ROLE=storage)`));
    else if (s.subrole === "minio") problems.push(at(s, "SUBROLE", `${s.hostname} must never host MinIO (SUBROLE=minio)`));
  }
  return problems;
}
function parseInventory(text, file, opts) {
  const { inventory: inventory2, problems } = checkInventory(text, file, opts);
  if (problems.length > 0) throw new InputError(problems);
  return inventory2;
}
function serversByRole(inv, role, subrole) {
  return inv.servers.filter((s) => s.role === role && (subrole === void 0 || s.subrole === subrole));
}
function isInventoryColumn(name) {
  return INVENTORY_COLUMNS.includes(name);
}
function stripBom(text) {
  return text.charCodeAt(0) === 65279 ? text.slice(1) : text;
}

// shared/plan/builders.ts
function container(spec) {
  return {
    args: [],
    env: {},
    volumes: [],
    networkMode: "host",
    restartPolicy: "unless-stopped",
    order: 0,
    entrypoint: "",
    ...spec
  };
}
function healthCheck(spec) {
  return {
    host: "",
    port: 0,
    path: "",
    container: "",
    command: [],
    expectRole: "",
    minReplicas: 0,
    timeoutMs: 2e3,
    sentinels: [],
    masterName: "",
    minSentinels: 0,
    ...spec
  };
}

// coordinator/modules/settings.ts
function checkSettings(raw, inv, defaults, schema) {
  const problems = [];
  const settings2 = { ...defaults };
  const read = (values2, where, into) => {
    for (const [key, value] of Object.entries(values2)) {
      if (!(key in schema)) {
        problems.push({ file: raw.file, line: 1, field: where + key, message: `unknown setting (known: ${Object.keys(schema).join(", ")})` });
        continue;
      }
      const kind = schema[key];
      const err = checkValue(kind, value);
      if (err) problems.push({ file: raw.file, line: 1, field: where + key, message: err });
      else into[key] = value;
    }
  };
  read(raw.values, "", settings2);
  const nodes = {};
  for (const [node, values2] of Object.entries(raw.nodes)) {
    if (!inv.servers.some((s) => s.hostname === node)) {
      problems.push({ file: raw.file, line: 1, field: `nodes.${node}`, message: `node "${node}" is not in ${inv.file}` });
      continue;
    }
    nodes[node] = {};
    read(values2, `nodes.${node}.`, nodes[node]);
  }
  return { settings: settings2, nodes, problems };
}
function checkValue(kind, v) {
  switch (kind) {
    case "string":
      return typeof v === "string" && v.length > 0 ? void 0 : "must be a non-empty string";
    case "bool":
      return typeof v === "boolean" ? void 0 : "must be true or false";
    case "int":
      return Number.isInteger(v) ? void 0 : "must be an integer";
    case "port":
      return Number.isInteger(v) && v > 0 && v < 65536 ? void 0 : "must be a port number (1-65535)";
    case "abspath":
      return typeof v === "string" && v.startsWith("/") && !v.split("/").includes("..") ? void 0 : 'must be an absolute path without ".."';
    case "string[]":
      return Array.isArray(v) && v.every((x) => typeof x === "string") ? void 0 : "must be a list of strings";
  }
}

// coordinator/modules/redis-auth.ts
var REDIS_AUTH_FILE = "redis-server.conf";
var SENTINEL_AUTH_FILE = "redis-sentinel.conf";
var SECRETS_MOUNT = "/run/secrets";
var REDIS_AUTH_MOUNT = `${SECRETS_MOUNT}/${REDIS_AUTH_FILE}`;
var SENTINEL_TEMPLATE_MOUNT = `${SECRETS_MOUNT}/${SENTINEL_AUTH_FILE}`;
var REDIS_ENV_MOUNT = `${SECRETS_MOUNT}/redis.env`;
var REDIS_CREDENTIALS_CHECK = { credentialsFile: "redis.env", passwordVar: "REDIS_PASSWORD" };
var ro = (file, target) => ({ hostPath: `${CREDENTIALS_DIR}/${file}`, containerPath: target, readOnly: true });
function accepted(v) {
  return [...new Set(v.accepted)].sort((a, b) => a - b);
}
function aclLine(v, variable) {
  return `user default on ${accepted(v).map((n2) => `#{{sha256 redis@${n2} ${variable}}}`).join(" ")} ~* &* +@all`;
}
function authMarker(v) {
  return `accepts redis@${accepted(v).join(",redis@")}; uses redis@${v.active}`;
}
function redisServerTemplate(v) {
  return [
    `# Rendered by kb-agent from redis.env (accepted versions ${accepted(v).join(", ")}; masterauth version ${v.active}). Do not edit.`,
    `masterauth {{redis redis@${v.active} REDIS_PASSWORD}}`,
    aclLine(v, "REDIS_PASSWORD"),
    ""
  ].join("\n");
}
function sentinelAuthLines(v, masterName) {
  return [
    aclLine(v, "REDIS_SENTINEL_PASSWORD"),
    `sentinel sentinel-pass {{redis redis@${v.active} REDIS_SENTINEL_PASSWORD}}`,
    `sentinel auth-pass ${masterName} {{redis redis@${v.active} REDIS_PASSWORD}}`
  ];
}
function redisAuth(v) {
  if (!v) return { argsPrefix: [], redisVolumes: [], redisEnv: {}, secretFiles: () => [], sentinelVolumes: [], sentinelEnv: {}, check: {} };
  const marker = authMarker(v);
  return {
    argsPrefix: [REDIS_AUTH_MOUNT],
    redisVolumes: [ro(REDIS_AUTH_FILE, REDIS_AUTH_MOUNT), ro("redis.env", REDIS_ENV_MOUNT)],
    redisEnv: { KB_REDIS_AUTH: marker, KB_REDIS_ENV: REDIS_ENV_MOUNT },
    secretFiles: (sentinelTemplate2) => [
      { file: REDIS_AUTH_FILE, mode: 384, uid: 0, gid: 0, template: redisServerTemplate(v) },
      { file: SENTINEL_AUTH_FILE, mode: 384, uid: 0, gid: 0, template: sentinelTemplate2 }
    ],
    sentinelVolumes: [ro(SENTINEL_AUTH_FILE, SENTINEL_TEMPLATE_MOUNT)],
    sentinelEnv: { KB_REDIS_AUTH: marker, KB_SENTINEL_TEMPLATE: SENTINEL_TEMPLATE_MOUNT },
    check: REDIS_CREDENTIALS_CHECK
  };
}

// coordinator/modules/redis.ts
var REDIS_DEFAULTS = {
  port: 6379,
  maxmemory_policy: "allkeys-lru",
  data_dir: "/opt/keybuzz/redis/data",
  extra_args: [],
  master_name: "kb-redis-master",
  sentinel_port: 26379,
  sentinel_quorum: 2,
  down_after_ms: 5e3,
  failover_timeout_ms: 6e4,
  parallel_syncs: 1,
  sentinel_dir: "/opt/keybuzz/redis/sentinel"
};
var MODULE_WIDE = [
  "port",
  "master_name",
  "sentinel_port",
  "sentinel_quorum",
  "down_after_ms",
  "failover_timeout_ms",
  "parallel_syncs"
];
var SENTINEL_MOUNT = "/sentinel";
var SENTINEL_TEMPLATE = "kb-template.conf";
var SENTINEL_START_SCRIPT = [
  "set -e",
  "umask 077",
  `cd ${SENTINEL_MOUNT}`,
  `tpl="\${KB_SENTINEL_TEMPLATE:-${SENTINEL_TEMPLATE}}"`,
  'sum="$(sha256sum < "$tpl" | cut -d" " -f1)"',
  'if [ ! -s sentinel.conf ] || [ "$sum" != "$(cat .kb-template.sha256 2>/dev/null)" ]; then',
  '  id="$(grep "^sentinel myid " sentinel.conf 2>/dev/null || true)"',
  '  cp "$tpl" sentinel.conf.kb-tmp',
  '  if [ -n "$id" ]; then echo "$id" >> sentinel.conf.kb-tmp; fi',
  "  mv sentinel.conf.kb-tmp sentinel.conf",
  '  echo "$sum" > .kb-template.sha256',
  "fi",
  "chmod 600 sentinel.conf",
  "rm -f .kb-template.applied",
  `exec redis-server ${SENTINEL_MOUNT}/sentinel.conf --sentinel`
].join("\n");
var REDIS_START_SCRIPT = [
  'sp=""',
  'if [ -n "${KB_REDIS_ENV:-}" ] && [ -r "$KB_REDIS_ENV" ]; then sp="$(. "$KB_REDIS_ENV"; printf %s "$REDIS_SENTINEL_PASSWORD")"; fi',
  'tmp="$(mktemp -d)"',
  "i=0",
  "for s in $KB_SENTINELS; do",
  "  i=$((i+1))",
  '  ( if [ -n "$sp" ]; then export REDISCLI_AUTH="$sp"; fi',
  '    timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw SENTINEL get-master-addr-by-name "$KB_MASTER_NAME" 2>/dev/null | paste -sd: - > "$tmp/$i" ) &',
  "done",
  "wait",
  'best="$(cat "$tmp"/* 2>/dev/null | grep -E "^[^ :]+:[0-9]+\\$" | sort | uniq -c | sort -rn | head -n1)"',
  'rm -rf "$tmp"',
  "unset sp",
  'votes="$(echo $best | cut -d" " -f1)"',
  'master="$(echo $best | cut -d" " -f2)"',
  'if [ -n "$votes" ] && [ "$votes" -ge "$KB_SENTINEL_MAJORITY" ]; then',
  '  echo "kb: $votes Sentinels name $master master" >&2',
  "else",
  '  master="${KB_DEFAULT_MASTER:-$KB_SELF}"',
  '  echo "kb: no Sentinel majority; the inventory names ${master} master" >&2',
  "fi",
  'if [ "$master" = "$KB_SELF" ]; then exec "$0" "$@"; fi',
  'exec "$0" "$@" --replicaof "${master%:*}" "${master##*:}"'
].join("\n");
function redisMasters(inv) {
  return serversByRole(inv, "redis", "master");
}
function redisHosts(inv) {
  const all = serversByRole(inv, "redis");
  return [...all.filter((s) => s.subrole === "master"), ...all.filter((s) => s.subrole !== "master")];
}
function redisTopology(inv, s) {
  const hosts = redisHosts(inv);
  return {
    masterName: s.master_name,
    redis: hosts.map((h) => ({ node: h.hostname, host: h.privateIp, port: s.port })),
    sentinels: hosts.map((h) => ({ node: h.hostname, host: h.privateIp, port: s.sentinel_port }))
  };
}
function sentinelTemplate(node, master, s) {
  const n2 = s.master_name;
  return [
    `# Rendered by kb (module redis) for ${node.hostname}. kb rewrites this template; the`,
    "# redis-sentinel container copies it over sentinel.conf only when it changes, because",
    "# Sentinel rewrites sentinel.conf itself (see docs/adr/0013-redis-master-follower.md).",
    `port ${s.sentinel_port}`,
    `bind ${node.privateIp}`,
    `sentinel announce-ip ${node.privateIp}`,
    "sentinel resolve-hostnames no",
    `sentinel monitor ${n2} ${master.privateIp} ${s.port} ${s.sentinel_quorum}`,
    `sentinel down-after-milliseconds ${n2} ${s.down_after_ms}`,
    `sentinel failover-timeout ${n2} ${s.failover_timeout_ms}`,
    `sentinel parallel-syncs ${n2} ${s.parallel_syncs}`,
    ""
  ].join("\n");
}
var redisModule = {
  name: "redis",
  description: "Redis master + replicas + Sentinel (ROLE=redis), bound to each node private address",
  imageKeys: { redis: "redis_image" },
  credentials: ["redis"],
  verifies: ["redis"],
  hosts: redisHosts,
  checkInventory(inv) {
    const problems = [];
    const m = redisMasters(inv);
    if (serversByRole(inv, "redis").length > 0 && m.length !== 1) {
      problems.push({
        file: inv.file,
        line: m[1]?.line ?? 1,
        message: m.length === 0 ? "redis: no ROLE=redis row has SUBROLE=master" : `redis: more than one master: ${m.map((s) => `${s.hostname} (line ${s.line})`).join(", ")}`
      });
    }
    return problems;
  },
  settings(raw, inv) {
    const out = checkSettings(raw, inv, REDIS_DEFAULTS, {
      port: "port",
      maxmemory_policy: "string",
      data_dir: "abspath",
      extra_args: "string[]",
      master_name: "string",
      sentinel_port: "port",
      sentinel_quorum: "int",
      down_after_ms: "int",
      failover_timeout_ms: "int",
      parallel_syncs: "int",
      sentinel_dir: "abspath"
    });
    const s = out.settings;
    const bad = (field, message) => out.problems.push({ file: raw.file, line: 1, field, message });
    for (const [node, values2] of Object.entries(out.nodes)) {
      for (const key of MODULE_WIDE) if (key in values2) bad(`nodes.${node}.${key}`, "must be the same on every node: set it at module level");
    }
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(s.master_name)) bad("master_name", "must be 1-64 characters among A-Z a-z 0-9 . _ -");
    const nodes = serversByRole(inv, "redis").length;
    if (!("sentinel_quorum" in raw.values) && nodes > 0) s.sentinel_quorum = Math.floor(nodes / 2) + 1;
    if (s.sentinel_quorum < 1 || nodes > 0 && s.sentinel_quorum > nodes) bad("sentinel_quorum", `must be between 1 and the number of redis nodes (${nodes})`);
    if (s.down_after_ms < 100) bad("down_after_ms", "must be at least 100");
    if (s.failover_timeout_ms < 1e3) bad("failover_timeout_ms", "must be at least 1000");
    if (s.parallel_syncs < 1) bad("parallel_syncs", "must be at least 1");
    if (s.sentinel_port === s.port) bad("sentinel_port", `must differ from port (${s.port})`);
    return out;
  },
  render({ inventory: inventory2, node, images, settings: settings2, nodeSettings, secrets }) {
    const s = { ...settings2, ...nodeSettings };
    const master = redisMasters(inventory2)[0];
    if (!master) throw new Error("redis: no master in inventory");
    const isMaster = master.hostname === node.hostname;
    const auth = redisAuth(secrets?.redis);
    const args = [
      ...auth.argsPrefix,
      "--bind",
      node.privateIp,
      "--port",
      String(s.port),
      // Replicas are known to the master (and so to Sentinel) by this address, whatever
      // source address their connection has.
      "--replica-announce-ip",
      node.privateIp,
      "--appendonly",
      "yes",
      "--maxmemory-policy",
      s.maxmemory_policy,
      ...s.extra_args
    ];
    const template = sentinelTemplate(node, master, s) + (secrets?.redis ? `${sentinelAuthLines(secrets.redis, s.master_name).join("\n")}
` : "");
    const secretFiles = auth.secretFiles(template);
    const topo = redisTopology(inventory2, settings2);
    const majority = Math.floor(topo.sentinels.length / 2) + 1;
    const localSentinel = `${node.privateIp}:${s.sentinel_port}`;
    return {
      module: "redis",
      containers: [
        container({
          name: "redis",
          image: images.redis,
          entrypoint: "/bin/sh",
          // $0 = redis-server, "$@" = its arguments; the script adds --replicaof (see REDIS_START_SCRIPT).
          args: ["-c", REDIS_START_SCRIPT, "redis-server", ...args],
          env: {
            KB_SELF: `${node.privateIp}:${s.port}`,
            KB_DEFAULT_MASTER: isMaster ? "" : `${master.privateIp}:${settings2.port}`,
            KB_SENTINELS: topo.sentinels.map((x) => `${x.host}:${x.port}`).join(" "),
            KB_MASTER_NAME: s.master_name,
            KB_SENTINEL_MAJORITY: String(majority),
            ...auth.redisEnv
          },
          volumes: [{ hostPath: s.data_dir, containerPath: "/data", readOnly: false }, ...auth.redisVolumes],
          restartPolicy: "unless-stopped",
          order: 1
        }),
        container({
          name: "redis-sentinel",
          image: images.redis,
          entrypoint: "/bin/sh",
          args: ["-c", SENTINEL_START_SCRIPT],
          // The template's hash: a changed template replaces the container, whose start script then copies it.
          env: { KB_SENTINEL_TEMPLATE_SHA256: sha256Hex(template), ...auth.sentinelEnv },
          volumes: [{ hostPath: s.sentinel_dir, containerPath: SENTINEL_MOUNT, readOnly: false }, ...auth.sentinelVolumes],
          restartPolicy: "unless-stopped",
          order: 2
        })
      ],
      // With credentials the template holds passwords: it is a rendered credentials file, not a plain file.
      files: secretFiles.length ? [] : [{ path: `${s.sentinel_dir}/${SENTINEL_TEMPLATE}`, mode: 420, content: Buffer.from(template) }],
      secretFiles,
      healthChecks: [
        healthCheck({ name: "redis-port", kind: "tcp", host: node.privateIp, port: s.port }),
        healthCheck({ name: "sentinel-port", kind: "tcp", host: node.privateIp, port: s.sentinel_port }),
        healthCheck({
          name: "redis-replication",
          kind: "redis-replication",
          host: node.privateIp,
          port: s.port,
          sentinels: [localSentinel],
          masterName: s.master_name,
          container: "redis",
          ...auth.check
        }),
        healthCheck({
          name: "sentinels-agree",
          kind: "redis-sentinel",
          host: node.privateIp,
          port: s.sentinel_port,
          sentinels: topo.sentinels.map((x) => `${x.host}:${x.port}`),
          masterName: s.master_name,
          minSentinels: topo.sentinels.length,
          container: "redis-sentinel",
          ...auth.check
        })
      ]
    };
  }
};

// coordinator/modules/haproxy.ts
var HAPROXY_DEFAULTS = {
  bind: "any",
  redis_port: 6379,
  stats_port: 8404,
  maxconn: 4096,
  redis_connect_timeout_ms: 100,
  redis_idle_timeout_ms: 18e5,
  follower_interval_ms: 2e3,
  follower_timeout_ms: 500,
  config_dir: "/opt/keybuzz/haproxy/conf",
  runtime_dir: "/opt/keybuzz/haproxy/run"
};
var REDIS_BACKEND = "be_redis_master";
var REDIS_SERVER = "redis-master";
var RUNTIME_MOUNT = "/run/kb-haproxy";
var CONFIG_MOUNT = "/usr/local/etc/haproxy";
function haproxyHosts(inv) {
  return serversByRole(inv, "lb", "internal-haproxy");
}
function bindAddress(node, s) {
  return s.bind === "private" ? node.privateIp : "0.0.0.0";
}
function haproxyConfig(node, s, redis) {
  const bind = bindAddress(node, s);
  const lines = [
    `# Rendered by kb (module haproxy) for ${node.hostname}. Do not edit: kb rewrites it.`,
    "global",
    `    maxconn ${s.maxconn}`,
    "    # Runtime API: a local unix socket only, admin level (kb's master follower).",
    `    stats socket ${RUNTIME_MOUNT}/admin.sock mode 600 level admin`,
    "    # Written by the master follower after every change; loaded at every start.",
    `    server-state-file ${RUNTIME_MOUNT}/server-state`,
    "",
    "defaults",
    "    mode tcp",
    "    timeout connect 5s",
    `    timeout client ${s.redis_idle_timeout_ms}ms`,
    `    timeout server ${s.redis_idle_timeout_ms}ms`,
    "    load-server-state-from-file global",
    "",
    `frontend fe_redis_${s.redis_port}`,
    `    bind ${bind}:${s.redis_port}`,
    `    default_backend ${REDIS_BACKEND}`,
    "",
    `# Always the master the Sentinel majority of "${redis.master_name}" agrees on, set by kb's follower.`,
    `backend ${REDIS_BACKEND}`,
    "    option redispatch 1",
    "    retries 3",
    `    timeout connect ${s.redis_connect_timeout_ms}ms`,
    `    server ${REDIS_SERVER} redis-master.kb.invalid:${redis.port} init-addr last,192.0.2.1 disabled`
  ];
  if (s.stats_port) {
    lines.push("", "listen stats", `    bind ${bind}:${s.stats_port}`, "    mode http", "    timeout client 30s", "    stats enable", "    stats uri /", "    stats refresh 10s");
  }
  return `${lines.join("\n")}
`;
}
var haproxyModule = {
  name: "haproxy",
  description: "Internal HAProxy (ROLE=lb, SUBROLE=internal-haproxy): be_redis_master follows the Sentinel master",
  imageKeys: { haproxy: "haproxy_image" },
  uses: ["redis"],
  // Clients of Redis on these nodes, the master follower and the SET/GET check use redis.env.
  credentials: ["redis"],
  hosts: haproxyHosts,
  checkInventory() {
    return [];
  },
  settings(raw, inv) {
    const out = checkSettings(raw, inv, HAPROXY_DEFAULTS, {
      bind: "string",
      redis_port: "port",
      stats_port: "int",
      maxconn: "int",
      redis_connect_timeout_ms: "int",
      redis_idle_timeout_ms: "int",
      follower_interval_ms: "int",
      follower_timeout_ms: "int",
      config_dir: "abspath",
      runtime_dir: "abspath"
    });
    const bad = (field, message) => out.problems.push({ file: raw.file, line: 1, field, message });
    for (const [where, v] of [["", out.settings], ...Object.entries(out.nodes).map(([n2, x]) => [`nodes.${n2}.`, x])]) {
      if (v.bind !== void 0 && v.bind !== "any" && v.bind !== "private") {
        bad(`${where}bind`, `must be "any" (0.0.0.0) or "private" (the node's private address), not "${v.bind}": HAProxy never binds a load-balancer address`);
      }
    }
    const s = out.settings;
    if (s.stats_port < 0 || s.stats_port > 65535) bad("stats_port", "must be 0 (off) or a port number");
    if (s.stats_port === s.redis_port) bad("stats_port", `must differ from redis_port (${s.redis_port})`);
    if (s.maxconn < 1) bad("maxconn", "must be at least 1");
    if (s.redis_connect_timeout_ms < 10) bad("redis_connect_timeout_ms", "must be at least 10");
    if (s.redis_idle_timeout_ms < 1e3) bad("redis_idle_timeout_ms", "must be at least 1000");
    if (s.follower_interval_ms < 100) bad("follower_interval_ms", "must be at least 100");
    if (s.follower_timeout_ms < 10) bad("follower_timeout_ms", "must be at least 10");
    return out;
  },
  render({ inventory: inventory2, node, images, settings: settings2, nodeSettings, peers, secrets }) {
    const s = { ...settings2, ...nodeSettings };
    const redis = peers.redis ?? REDIS_DEFAULTS;
    const config = haproxyConfig(node, s, redis);
    const topo = redisTopology(inventory2, redis);
    const checkHost = s.bind === "private" ? node.privateIp : "127.0.0.1";
    return {
      module: "haproxy",
      containers: [container({
        name: "haproxy",
        image: images.haproxy,
        args: ["-f", `${CONFIG_MOUNT}/haproxy.cfg`],
        // The configuration's hash: a changed configuration restarts HAProxy, which reloads the server state.
        env: { KB_CONFIG_SHA256: sha256Hex(config) },
        volumes: [
          { hostPath: s.config_dir, containerPath: CONFIG_MOUNT, readOnly: true },
          { hostPath: s.runtime_dir, containerPath: RUNTIME_MOUNT, readOnly: false }
        ],
        restartPolicy: "unless-stopped",
        order: 1
      })],
      files: [{ path: `${s.config_dir}/haproxy.cfg`, mode: 420, content: Buffer.from(config) }],
      healthChecks: [
        healthCheck({ name: "redis-frontend", kind: "tcp", host: checkHost, port: s.redis_port }),
        healthCheck({ name: "follower", kind: "redis-follower" }),
        healthCheck({ name: "redis-set-get", kind: "redis-setget", host: checkHost, port: s.redis_port, timeoutMs: 2e3, ...secrets?.redis ? REDIS_CREDENTIALS_CHECK : {} })
      ],
      redisFollower: {
        masterName: redis.master_name,
        sentinels: topo.sentinels.map((x) => `${x.host}:${x.port}`),
        runtimeSocket: `${s.runtime_dir}/admin.sock`,
        backend: REDIS_BACKEND,
        server: REDIS_SERVER,
        serverStateFile: `${s.runtime_dir}/server-state`,
        reconcileIntervalMs: s.follower_interval_ms,
        timeoutMs: s.follower_timeout_ms,
        ...secrets?.redis ? { credentialsFile: REDIS_CREDENTIALS_CHECK.credentialsFile } : {}
      }
    };
  }
};

// coordinator/modules/index.ts
var MODULES = [redisModule, haproxyModule];
function getModule(name) {
  const m = MODULES.find((x) => x.name === name);
  if (!m) throw new UnknownModuleError(name, MODULES.map((x) => x.name));
  return m;
}

// coordinator/planner.ts
async function computeDesired(def, inputs, resolver, secrets) {
  const problems = [...def.checkInventory(inputs.inventory)];
  const raw = inputs.settings[def.name] ?? emptySettings("(no settings file)");
  const s = def.settings(raw, inputs.inventory);
  problems.push(...s.problems);
  problems.push(...settingsSecrets(def.name, raw));
  const peers = {};
  for (const name of def.uses ?? []) {
    const peer = getModule(name);
    const ps = peer.settings(inputs.settings[name] ?? emptySettings("(no settings file)"), inputs.inventory);
    problems.push(...ps.problems);
    peers[name] = ps.settings;
  }
  const tagged = {};
  for (const [logical, key] of Object.entries(def.imageKeys)) {
    try {
      tagged[logical] = imageFor(inputs.versions, key.replace(/_image$/, ""));
    } catch (err) {
      if (err instanceof InputError) problems.push(...err.problems);
      else throw err;
    }
  }
  const hosts = def.hosts(inputs.inventory);
  if (hosts.length === 0) problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: no host in the inventory has its role` });
  for (const name of def.credentials ?? []) {
    const spec = findCredential(name);
    if (!spec) {
      problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: unknown credentials "${name}"` });
      continue;
    }
    for (const h of hosts.filter((x) => !mayReceive(spec, x))) {
      problems.push({ file: inputs.inventory.file, line: h.line, field: "ROLE", message: `module ${def.name} would deliver ${spec.file} to ${h.hostname} (ROLE=${h.role}${h.subrole ? `/${h.subrole}` : ""}), which the credentials policy does not allow` });
    }
    if (secrets && !secrets[name]) problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: the secret store has no ${spec.file}` });
  }
  if (problems.length) throw new InputError(problems);
  const mine = secrets && def.credentials?.length ? Object.fromEntries(def.credentials.map((n2) => [n2, secrets[n2]])) : void 0;
  const images = {};
  await Promise.all(Object.entries(tagged).map(async ([logical, ref]) => {
    images[logical] = await resolver.resolve(ref);
  }));
  const states = {};
  for (const node of hosts) {
    const desired = def.render({
      inventory: inputs.inventory,
      node,
      images,
      settings: s.settings,
      nodeSettings: s.nodes[node.hostname] ?? {},
      peers,
      ...mine ? { secrets: mine } : {}
    });
    states[node.hostname] = withSpecHash({ ...withCredentials(def, desired, mine), revision: 0 });
  }
  return { module: def.name, images, states, order: hosts.map((h) => h.hostname) };
}
function withCredentials(def, desired, secrets) {
  const secretFiles = desired.secretFiles ?? [];
  if (!secrets) {
    if (secretFiles.length) throw new Error(`module ${def.name}: rendered credential templates without a secret store`);
    return desired;
  }
  const refs = [];
  const have = (name, version) => refs.some((r) => r.name === name && r.version === version);
  for (const name of def.credentials ?? []) {
    refs.push({ name, version: secrets[name].active, file: findCredential(name).file });
  }
  for (const f of secretFiles) {
    for (const t2 of templateRefs(f.template)) {
      const v = secrets[t2.name];
      if (!v) throw new Error(`module ${def.name}: template ${f.file} uses ${t2.name}, which is not in the module's credentials`);
      if (t2.version !== v.active && !v.accepted.includes(t2.version)) throw new Error(`module ${def.name}: template ${f.file} uses ${t2.name}@${t2.version}, which is neither active nor accepted`);
      if (!have(t2.name, t2.version)) refs.push({ name: t2.name, version: t2.version, file: "" });
    }
  }
  refs.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.version - b.version || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { ...desired, secrets: refs, secretFiles: [...secretFiles].sort((a, b) => a.file < b.file ? -1 : 1) };
}
function settingsSecrets(module, raw) {
  const found = [
    ...findSecretsInValue(raw.values, module),
    ...Object.entries(raw.nodes).flatMap(([n2, v]) => findSecretsInValue(v, `${module}.nodes.${n2}`))
  ];
  registerSecretValues(found.map((f) => f.match));
  return found.map((f) => ({
    file: raw.file,
    line: 1,
    field: f.path,
    message: `looks like a secret (${f.what}): settings end up in plan records; kb generates and delivers credentials (kbctl secrets)`
  }));
}

// coordinator/store/codec.ts
function encodeRecord(value) {
  return JSON.stringify(value, bufferReplacer);
}
function bufferReplacer(_key, value) {
  if (value && typeof value === "object" && value.type === "Buffer" && Array.isArray(value.data)) {
    return { $b64: Buffer.from(value.data).toString("base64") };
  }
  return value;
}

// test/tmp-plan/plan.ts
var n = Number(process.argv[2] ?? 5e3);
var H = "ENV	IP_PUBLIQUE	HOSTNAME	IP_PRIVEE	FQDN	USER_SSH	POOL	ROLE	SUBROLE	DOCKER_STACK	CORE	NOTES";
var row = (name, ip, role, sub) => `prod	-	${name}	${ip}	${name}.kb.test	root	b	${role}	${sub}	b	yes	x`;
var rows = [row("redis-01", "127.0.4.1", "redis", "master"), row("redis-02", "127.0.4.2", "redis", "replica"), row("redis-03", "127.0.4.3", "redis", "replica")];
for (let i = 0; i < n; i++) rows.push(row(`lb-${String(i + 1).padStart(5, "0")}`, `127.4.${Math.floor(i / 254)}.${i % 254 + 1}`, "lb", "internal-haproxy"));
var t = Date.now();
var inventory = parseInventory([H, ...rows].join("\n") + "\n", "servers.tsv");
console.log("parse inventory", Date.now() - t);
t = Date.now();
var versions = parseVersions(readFileSync(process.argv[3], "utf8"), "v.yaml");
var settings = parseSettings("haproxy:\n  bind: private\n", "m.yaml", ["redis", "haproxy"]);
var d = await computeDesired(getModule("haproxy"), { inventory, versions, settings }, { resolve: async (r) => `${r}@sha256:${"0".repeat(64)}` }, { redis: { active: 1, accepted: [1] } });
console.log("computeDesired", Date.now() - t);
t = Date.now();
var enc = encodeRecord({ states: d.states });
console.log("encode revision", Date.now() - t, "bytes", enc.length);
