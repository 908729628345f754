import { execFileSync } from 'node:child_process';
import os from 'node:os';

/** First line of a command's output, or '?' when it fails (versions in the machine description). */
export function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
  } catch {
    return '?';
  }
}

/** "2 x <model>; RAM 24 GiB; Linux <release>", with `cpuNote` after the CPU model when given. */
export function hostLine(cpuNote = ''): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? '?'}${cpuNote}; RAM ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${os.type()} ${os.release()}`;
}

/** The server version of the Docker engine at `host`. */
export function dockerVersion(host: string): string {
  return firstLine('docker', ['-H', host, 'version', '--format', '{{.Server.Version}}']);
}
