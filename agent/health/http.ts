import { errorMessage } from '../../shared/errors/index.js';
import type { CheckInput, Outcome } from './types.js';

/** `http`: GET http://host:port/path; ok on a 2xx status. observed: `GET <url>: HTTP <status>`. */
export async function httpCheck({ check, timeoutMs }: CheckInput): Promise<Outcome> {
  const path = check.path ? (check.path.startsWith('/') ? check.path : `/${check.path}`) : '/';
  const url = `http://${check.host || '127.0.0.1'}:${check.port}${path}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await res.body?.cancel().catch(() => undefined);
    return { ok: res.status >= 200 && res.status < 300, observed: `GET ${url}: HTTP ${res.status}` };
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : e.cause?.code ?? errorMessage(err);
    return { ok: false, observed: `GET ${url}: ${why}` };
  }
}
