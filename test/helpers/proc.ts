import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import net from 'node:net';

/** A child process whose stdout+stderr go to a log file the test can read or print. */
export class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(readonly name: string, cmd: string, args: string[], readonly logFile: string, env: NodeJS.ProcessEnv = {}) {
    const out = createWriteStream(logFile, { flags: 'a' });
    this.child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.pipe(out, { end: false });
    this.child.stderr!.pipe(out, { end: false });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => {
      this.exitCode = code ?? (signal ? -1 : null);
      resolve(this.exitCode);
    }));
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Sends `signal` and waits for the exit. Safe to call on an exited process. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    await this.exited;
  }
}

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A free TCP port on 127.0.0.1 outside the ephemeral range (32768-60999). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port found');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
