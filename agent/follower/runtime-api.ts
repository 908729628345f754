import { connect } from 'node:net';
import { KbError } from '../../shared/errors/index.js';

/** Thrown when HAProxy's Runtime API cannot be reached or refuses a command. */
export class RuntimeApiError extends KbError {
  override name = 'RuntimeApiError';
}

/** One server as `show servers state` reports it. */
export interface ServerState {
  backend: string;
  server: string;
  addr: string;
  port: number;
  /** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
  opState: number;
  /** srv_admin_state bit field (1 forced maint, 2 inherited maint, 4 config maint, 8/16 drain, 32 resolution maint). */
  adminState: number;
}

/** True when the server takes traffic: no maintenance (forced, inherited, resolution) and no drain. */
export function isReady(s: ServerState): boolean {
  return (s.adminState & (0x01 | 0x02 | 0x20 | 0x08 | 0x10)) === 0;
}

/** "ip:port" HAProxy routes the server to. */
export function routedTo(s: ServerState): string {
  return `${s.addr}:${s.port}`;
}

/**
 * Finds `backend/server` in the output of `show servers state` (version line, `# header`,
 * then one space-separated line per server; columns are located by the header).
 */
export function parseServersState(text: string, backend: string, server: string): ServerState | undefined {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const header = lines.find((l) => l.startsWith('#'))?.replace(/^#\s*/, '').split(/\s+/);
  if (!header) return undefined;
  const col = (name: string) => header.indexOf(name);
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    const f = line.split(/\s+/);
    if (f[col('be_name')] !== backend || f[col('srv_name')] !== server) continue;
    return {
      backend,
      server,
      addr: f[col('srv_addr')] ?? '',
      port: Number(f[col('srv_port')] ?? 0),
      opState: Number(f[col('srv_op_state')] ?? 0),
      adminState: Number(f[col('srv_admin_state')] ?? 0),
    };
  }
  return undefined;
}

/**
 * Client of HAProxy's Runtime API on a unix socket (non-interactive mode: one connection
 * per request; several commands may be joined with "; "). Stateless; safe to call
 * concurrently.
 */
export class RuntimeApi {
  constructor(readonly socketPath: string, private readonly timeoutMs: number) {
    if (Buffer.byteLength(socketPath) > 107) throw new RuntimeApiError(`Runtime API socket path is longer than 107 bytes: ${socketPath}`);
  }

  /** Sends one line and returns HAProxy's whole answer. */
  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = connect({ path: this.socketPath });
      let out = '';
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new RuntimeApiError(`Runtime API ${this.socketPath}: no answer to "${line}" within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      sock.setEncoding('utf8');
      sock.on('connect', () => sock.write(`${line}\n`));
      sock.on('data', (d: string) => { out += d; });
      sock.on('end', () => { clearTimeout(timer); resolve(out); });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new RuntimeApiError(`Runtime API ${this.socketPath}: ${err.code ?? err.message}`, { cause: err }));
      });
    });
  }

  /** `show servers state <backend>`, raw (the server-state file format). */
  showServersState(backend: string): Promise<string> {
    return this.command(`show servers state ${backend}`);
  }

  async serverState(backend: string, server: string): Promise<ServerState> {
    const text = await this.showServersState(backend);
    const s = parseServersState(text, backend, server);
    if (!s) throw new RuntimeApiError(`HAProxy has no server ${backend}/${server}: ${text.trim().split('\n')[0] ?? ''}`);
    return s;
  }

  /**
   * Points `backend/server` at host:port, makes it ready, and shuts down the sessions still
   * open on it (they lead to the previous address), in one request.
   */
  async setServer(backend: string, server: string, host: string, port: number): Promise<void> {
    const s = `${backend}/${server}`;
    const out = await this.command(`set server ${s} addr ${host} port ${port}; set server ${s} state ready; shutdown sessions server ${s}`);
    if (/no such|unknown|not found|require|invalid|error|only supported/i.test(out)) throw new RuntimeApiError(`set server ${s} addr ${host} port ${port}: ${out.trim()}`);
  }
}
