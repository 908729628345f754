import { createReadStream, existsSync, statSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { errorMessage } from '../../shared/errors/index.js';
import { EnrollError, type Enroller } from '../pki/enroll.js';
import type { Pki } from '../pki/pki.js';

/** Largest enrollment request accepted (a CSR is under 1 KiB). */
export const MAX_ENROLL_BODY_BYTES = 16 * 1024;

export interface BootstrapDeps {
  pki: Pki;
  enroller: Enroller;
  /** The agent binary served at /kb-agent, and its sha256 (computed once at start). */
  agentBinary: string;
  agentSha256: string;
  /** install.sh with this coordinator's address baked in. */
  /** install.sh, rendered per request (it lists the coordinator replicas alive at that time). */
  installScript: () => Promise<string>;
  /** gRPC addresses handed to enrolled agents. */
  /** Every coordinator address agents should know (this one first). */
  coordinators: () => Promise<string[]>;
  log: Logger;
}

/**
 * The bootstrap listener: HTTPS with the coordinator's serving certificate and NO client
 * certificate, so a new server can fetch the installer and enroll. It is the only
 * unauthenticated surface; the gRPC port is mTLS only.
 *
 *   GET  /install.sh       the installer (address, key pin and agent sha256 baked in)
 *   GET  /kb-agent         the single-binary agent
 *   GET  /kb-agent.sha256  its checksum (`sha256sum` format)
 *   GET  /ca.crt           the private CA (agents check it against the token's pin)
 *   POST /v1/enroll        {token, csr} -> {certificate, ca, serial, notAfterMs, coordinators}
 */
export class BootstrapServer {
  private readonly server: https.Server;
  port = 0;

  constructor(private readonly deps: BootstrapDeps) {
    this.server = https.createServer({ cert: deps.pki.serverCertPem, key: deps.pki.serverKeyPem, minVersion: 'TLSv1.2' }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        deps.log.error({ err: errorMessage(err), url: req.url }, 'bootstrap request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
    this.server.requestTimeout = 120_000;
    this.server.headersTimeout = 10_000;
  }

  start(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        this.port = typeof a === 'object' && a ? a.port : port;
        resolve(this.port);
      });
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    const d = this.deps;
    if (req.method === 'GET' && url === '/install.sh') return text(res, 200, await d.installScript(), 'text/x-shellscript');
    if (req.method === 'GET' && url === '/ca.crt') return text(res, 200, d.pki.caPem, 'application/x-pem-file');
    if (req.method === 'GET' && url === '/kb-agent.sha256') return text(res, 200, `${d.agentSha256}  kb-agent\n`, 'text/plain');
    if (req.method === 'GET' && url === '/kb-agent') {
      if (!existsSync(d.agentBinary)) return text(res, 404, `agent binary not available on this coordinator (${d.agentBinary})\n`, 'text/plain');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(d.agentBinary).size });
      createReadStream(d.agentBinary).on('error', () => res.destroy()).pipe(res);
      return;
    }
    if (req.method === 'POST' && url === '/v1/enroll') return this.enroll(req, res);
    text(res, 404, 'not found\n', 'text/plain');
  }

  private async enroll(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const source = req.socket.remoteAddress ?? 'unknown';
    this.deps.log.info({ source }, 'enrollment request');
    let body: { token?: unknown; csr?: unknown };
    try {
      body = JSON.parse((await readBody(req, MAX_ENROLL_BODY_BYTES)).toString('utf8')) as typeof body;
    } catch (err) {
      return json(res, 400, { error: `bad enrollment request: ${errorMessage(err)}` });
    }
    if (typeof body.token !== 'string' || typeof body.csr !== 'string') return json(res, 400, { error: 'bad enrollment request: expected {"token": "...", "csr": "PEM"}' });
    try {
      const issued = await this.deps.enroller.enroll({ token: body.token, csrPem: body.csr }, source);
      json(res, 200, { node: issued.node, certificate: issued.certificatePem, ca: issued.caPem, serial: issued.serial, notAfterMs: issued.notAfterMs, coordinators: await this.deps.coordinators() });
    } catch (err) {
      if (err instanceof EnrollError) return json(res, err.status, { error: err.message });
      throw err;
    }
  }
}

function text(res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  text(res, status, JSON.stringify(body), 'application/json');
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new Error(`body larger than ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
