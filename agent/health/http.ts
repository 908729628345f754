import http from 'node:http';
import { errorMessage } from '../../shared/errors/index.js';
import type { CheckInput, Outcome } from './types.js';

/**
 * `http`: GET http://host:port/path; ok on a 2xx status. observed: `GET <url>: HTTP <status>`.
 * Redirects are not followed (a 3xx is not ok). Uses node:http, not fetch: fetch would load
 * undici into the agent for good, and undici needs WebAssembly, which --jitless removes.
 */
export async function httpCheck({ check, timeoutMs }: CheckInput): Promise<Outcome> {
  const path = check.path ? (check.path.startsWith('/') ? check.path : `/${check.path}`) : '/';
  const host = check.host || '127.0.0.1';
  const url = `http://${host}:${check.port}${path}`;
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host, port: check.port, path, agent: false, timeout: timeoutMs }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'TIMEOUT' })));
      req.on('error', reject);
    });
    return { ok: status >= 200 && status < 300, observed: `GET ${url}: HTTP ${status}` };
  } catch (err) {
    const e = err as { code?: string };
    const why = e.code === 'TIMEOUT' ? `no answer within ${timeoutMs} ms` : e.code ?? errorMessage(err);
    return { ok: false, observed: `GET ${url}: ${why}` };
  }
}
