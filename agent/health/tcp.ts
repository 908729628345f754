import { connect } from 'node:net';
import type { CheckInput, Outcome } from './types.js';

/** `tcp`: ok when a TCP connection to host:port opens within the timeout (then closed at once). */
export function tcpCheck({ check, timeoutMs }: CheckInput): Promise<Outcome> {
  const host = check.host || '127.0.0.1';
  const where = `${host}:${check.port}`;
  return new Promise((resolve) => {
    const sock = connect({ host, port: check.port });
    const done = (o: Outcome): void => { clearTimeout(timer); sock.destroy(); resolve(o); };
    const timer = setTimeout(() => done({ ok: false, observed: `connect ${where}: no answer within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => done({ ok: true, observed: `connected to ${where}` }));
    sock.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, observed: `connect ${where}: ${err.code ?? err.message}` }));
  });
}
