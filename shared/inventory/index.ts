/**
 * servers.tsv: the KeyBuzz inventory (see KEYBUZZ.md "Inventory: servers.tsv").
 *
 * Parsing is header-driven: columns are located by their header name, so their order may
 * change and unknown extra columns are ignored. Every function here is pure except the
 * `load*`/`*File` ones, which read one file synchronously.
 *
 * Two entry points with the same checks:
 *  - `checkInventory` never throws on bad content; it returns what it could parse plus every
 *    problem found (what `kbctl validate` prints);
 *  - `parseInventory` / `loadInventory` throw one `InputError` carrying all problems.
 */
import { readFileSync } from 'node:fs';
import { InputError, errorMessage, type Problem } from '../errors/index.js';
import { isDnsLabel, isIPv4 } from './fields.js';

export { isDnsLabel, isIPv4 } from './fields.js';

/** The 12 required columns, in the order the design lists them. */
export const INVENTORY_COLUMNS = [
  'ENV', 'IP_PUBLIQUE', 'HOSTNAME', 'IP_PRIVEE', 'FQDN', 'USER_SSH',
  'POOL', 'ROLE', 'SUBROLE', 'DOCKER_STACK', 'CORE', 'NOTES',
] as const;
export type InventoryColumn = (typeof INVENTORY_COLUMNS)[number];

/** Environment kept when `InventoryOptions.env` is not given. */
export const DEFAULT_ENV = 'prod';

/** Hosts the design forbids from running MinIO (the design and the inventory spell it differently). */
export const NO_MINIO_HOSTS: readonly string[] = ['k8s-worker-05', 'k3s-worker-05'];

/** One row of servers.tsv. Every string is trimmed of surrounding whitespace. */
export interface Server {
  env: string;
  /** '' when the column is empty or '-' (the server has no public address). */
  publicIp: string;
  hostname: string;
  privateIp: string;
  fqdn: string;
  userSsh: string;
  pool: string;
  role: string;
  subrole: string;
  dockerStack: string;
  /** CORE=yes. A row whose CORE is neither yes nor no is reported and reads as false. */
  core: boolean;
  /** Free text; accents, quotes and tabs inside it are kept. */
  notes: string;
  /** 1-based line in the file. */
  line: number;
}

export interface Inventory {
  file: string;
  /**
   * Rows kept by the env filter, in file order. From `checkInventory` this may include rows
   * that have field problems; rows with the wrong number of columns are never included.
   */
  servers: Server[];
}

export interface InventoryOptions {
  /** Keep only rows with this ENV. Default 'prod' (`DEFAULT_ENV`); '*' keeps every row. */
  env?: string;
}

/**
 * Checks servers.tsv content and returns every problem instead of throwing.
 *
 * Field checks (column count, IPv4 syntax, hostname, CORE, ENV) apply to every row; duplicate
 * HOSTNAME / IP_PRIVEE checks and the role rules (one Redis master, no MinIO on
 * k8s-worker-05) apply to the rows kept by the env filter. Problems are sorted by line, then
 * column. A missing required column stops the check after the header (rows cannot be read).
 */
export function checkInventory(
  text: string,
  file: string,
  opts: InventoryOptions = {},
): { inventory: Inventory; problems: Problem[] } {
  const env = opts.env ?? DEFAULT_ENV;
  const problems: Problem[] = [];
  const inventory: Inventory = { file, servers: [] };
  const lines = stripBom(text).split(/\r?\n/);

  const headerLine = lines[0] ?? '';
  if (headerLine.trim() === '') {
    problems.push({ file, line: 1, message: `empty header: expected the columns ${INVENTORY_COLUMNS.join(', ')}` });
    return { inventory, problems };
  }
  const header = headerLine.split('\t').map((h) => h.trim());
  const found = new Map<string, number>();
  header.forEach((name, i) => {
    const first = found.get(name);
    if (first === undefined) found.set(name, i);
    else if (isInventoryColumn(name)) {
      problems.push({ file, line: 1, column: i + 1, message: `duplicate column "${name}" (first at column ${first + 1})` });
    }
  });
  const pos = {} as Record<InventoryColumn, number>;
  for (const name of INVENTORY_COLUMNS) {
    const i = found.get(name);
    if (i === undefined) problems.push({ file, line: 1, message: `missing required column "${name}"` });
    else pos[name] = i;
  }
  if (problems.length > 0) return { inventory, problems };

  const notesLast = pos.NOTES === header.length - 1;
  const all: Server[] = [];
  for (let i = 1; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    if (raw.trim() === '') continue;
    const line = i + 1;
    let fields = raw.split('\t');
    if (fields.length < header.length || (fields.length > header.length && !notesLast)) {
      problems.push({ file, line, message: `expected ${header.length} columns, found ${fields.length}` });
      continue;
    }
    if (fields.length > header.length) {
      // NOTES is the last column and free text: a tab inside it splits it into extra fields.
      fields = [...fields.slice(0, header.length - 1), fields.slice(header.length - 1).join('\t')];
    }
    const get = (c: InventoryColumn): string => (fields[pos[c]] ?? '').trim();
    const report = (c: InventoryColumn, message: string): void => {
      problems.push({ file, line, column: pos[c] + 1, field: c, message });
    };

    const server: Server = {
      env: get('ENV'),
      publicIp: get('IP_PUBLIQUE'),
      hostname: get('HOSTNAME'),
      privateIp: get('IP_PRIVEE'),
      fqdn: get('FQDN'),
      userSsh: get('USER_SSH'),
      pool: get('POOL'),
      role: get('ROLE'),
      subrole: get('SUBROLE'),
      dockerStack: get('DOCKER_STACK'),
      core: get('CORE') === 'yes',
      notes: get('NOTES'),
      line,
    };

    if (server.env === '') report('ENV', 'must not be empty');
    if (server.publicIp === '-') server.publicIp = '';
    else if (server.publicIp !== '' && !isIPv4(server.publicIp)) {
      report('IP_PUBLIQUE', `invalid IPv4 address ${JSON.stringify(server.publicIp)} (leave it empty or '-' when there is none)`);
    }
    if (server.hostname === '') report('HOSTNAME', 'must not be empty');
    else if (!isDnsLabel(server.hostname)) {
      report('HOSTNAME', `${JSON.stringify(server.hostname)} is not a valid DNS label (lowercase letters, digits and '-', at most 63 characters)`);
    }
    if (server.privateIp === '') report('IP_PRIVEE', 'must not be empty');
    else if (!isIPv4(server.privateIp)) report('IP_PRIVEE', `invalid IPv4 address ${JSON.stringify(server.privateIp)}`);
    const core = get('CORE');
    if (core !== 'yes' && core !== 'no') report('CORE', `must be "yes" or "no", found ${JSON.stringify(core)}`);

    all.push(server);
  }

  inventory.servers = env === '*' ? all : all.filter((s) => s.env === env);
  problems.push(...checkKeptRows(inventory.servers, file, pos));
  problems.sort((a, b) => a.line - b.line || (a.column ?? 0) - (b.column ?? 0));
  return { inventory, problems };
}

/** Duplicate and role rules over the rows kept by the env filter. */
function checkKeptRows(servers: Server[], file: string, pos: Record<InventoryColumn, number>): Problem[] {
  const problems: Problem[] = [];
  const at = (s: Server, c: InventoryColumn, message: string): Problem =>
    ({ file, line: s.line, column: pos[c] + 1, field: c, message });

  const byHost = new Map<string, Server>();
  const byIp = new Map<string, Server>();
  for (const s of servers) {
    if (s.hostname !== '') {
      const first = byHost.get(s.hostname);
      if (first) problems.push(at(s, 'HOSTNAME', `duplicate hostname "${s.hostname}" (first on line ${first.line})`));
      else byHost.set(s.hostname, s);
    }
    if (s.privateIp !== '') {
      const first = byIp.get(s.privateIp);
      if (first) {
        problems.push(at(s, 'IP_PRIVEE', `duplicate private IP ${s.privateIp} (first on line ${first.line}, ${first.hostname})`));
      } else byIp.set(s.privateIp, s);
    }
  }

  const masters = servers.filter((s) => s.role === 'redis' && s.subrole === 'master');
  const second = masters[1];
  if (second) {
    const list = masters.map((s) => `${s.hostname} (line ${s.line})`).join(', ');
    problems.push(at(second, 'SUBROLE', `more than one Redis master: ${list}`));
  }

  for (const s of servers) {
    if (!NO_MINIO_HOSTS.includes(s.hostname)) continue;
    if (s.role === 'storage') problems.push(at(s, 'ROLE', `${s.hostname} must never host MinIO (ROLE=storage)`));
    else if (s.subrole === 'minio') problems.push(at(s, 'SUBROLE', `${s.hostname} must never host MinIO (SUBROLE=minio)`));
  }
  return problems;
}

/** Like `checkInventory`, but throws an `InputError` listing every problem. */
export function parseInventory(text: string, file: string, opts?: InventoryOptions): Inventory {
  const { inventory, problems } = checkInventory(text, file, opts);
  if (problems.length > 0) throw new InputError(problems);
  return inventory;
}

/**
 * Reads and checks a servers.tsv file. A file that cannot be read (missing, a directory,
 * unreadable) is one problem on line 0 naming the file.
 */
export function checkInventoryFile(file: string, opts?: InventoryOptions): { inventory: Inventory; problems: Problem[] } {
  const read = readInputFile(file);
  if ('problem' in read) return { inventory: { file, servers: [] }, problems: [read.problem] };
  return checkInventory(read.text, file, opts);
}

/** Reads and parses a servers.tsv file; throws `InputError` (a missing file is a problem on line 0). */
export function loadInventory(file: string, opts?: InventoryOptions): Inventory {
  const { inventory, problems } = checkInventoryFile(file, opts);
  if (problems.length > 0) throw new InputError(problems);
  return inventory;
}

/** The kept row with this exact hostname. */
export function findServer(inv: Inventory, hostname: string): Server | undefined {
  return inv.servers.find((s) => s.hostname === hostname);
}

/** Kept rows with this ROLE (and SUBROLE when given), in file order. */
export function serversByRole(inv: Inventory, role: string, subrole?: string): Server[] {
  return inv.servers.filter((s) => s.role === role && (subrole === undefined || s.subrole === subrole));
}

function isInventoryColumn(name: string): name is InventoryColumn {
  return (INVENTORY_COLUMNS as readonly string[]).includes(name);
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Reads a UTF-8 input file, turning a read failure into a line-0 problem naming the file. */
function readInputFile(file: string): { text: string } | { problem: Problem } {
  try {
    return { text: readFileSync(file, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'file not found' : `cannot read file: ${errorMessage(err)}`;
    return { problem: { file, line: 0, message } };
  }
}
