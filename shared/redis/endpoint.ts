import { KbError } from '../errors/index.js';

/** A TCP endpoint, e.g. a Redis server or a Sentinel. */
export interface Endpoint {
  host: string;
  port: number;
}

/** Thrown when a "host:port" string cannot be parsed. */
export class EndpointError extends KbError {
  override name = 'EndpointError';
}

/** Parses "host:port" (IPv4 or a name; no IPv6 brackets: KeyBuzz's private network is IPv4). */
export function parseEndpoint(text: string): Endpoint {
  const m = /^([^\s:]+):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new EndpointError(`"${text}" is not host:port`);
  return { host: m[1]!, port };
}

export function formatEndpoint(e: Endpoint): string {
  return `${e.host}:${e.port}`;
}

/** Redis credentials. Every kb Redis/Sentinel client accepts them; none is required today. */
export interface RedisAuth {
  username?: string;
  password?: string;
}

/** ioredis options for `auth` (empty when there is none). The value never leaves this object. */
export function authOptions(auth: RedisAuth | undefined): { username?: string; password?: string } {
  if (!auth?.password) return {};
  return auth.username ? { username: auth.username, password: auth.password } : { password: auth.password };
}
