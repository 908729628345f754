import { ImageResolveError, errorMessage } from '../../shared/errors/index.js';
import { splitImageRef } from '../../shared/versions/index.js';

/**
 * Resolves an image reference from versions.yaml to a pinned `repo:tag@sha256:<digest>`
 * through the registry's HTTP API v2 (HEAD on the manifest, header Docker-Content-Digest),
 * with the anonymous Bearer token flow that public registries use.
 *
 * A reference already carrying a digest is returned as is (no network). Registries on
 * loopback (127.0.0.0/8, localhost) are spoken to over plain HTTP, as Docker does;
 * every other registry over HTTPS. Calls are independent and safe to run concurrently.
 */
export interface ImageResolver {
  resolve(ref: string): Promise<string>;
}

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
].join(', ');

export function registryLocation(repository: string): { base: string; name: string } {
  const first = repository.split('/')[0] ?? '';
  const hasHost = repository.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasHost) {
    const name = repository.includes('/') ? repository : `library/${repository}`;
    return { base: 'https://registry-1.docker.io', name };
  }
  const host = first;
  const name = repository.slice(first.length + 1);
  const hostname = host.replace(/:\d+$/, '');
  const loopback = hostname === 'localhost' || /^127\./.test(hostname) || hostname === '[::1]';
  return { base: `${loopback ? 'http' : 'https'}://${host}`, name };
}

export class RegistryResolver implements ImageResolver {
  constructor(private readonly opts: { timeoutMs?: number } = {}) {
    // Node loads its HTTP client (undici, behind fetch) the first time one of its globals is
    // read: 35-90 ms that would otherwise land on the first rollout after a start.
    void globalThis.Response;
  }

  async resolve(ref: string): Promise<string> {
    const { repository, tag, digest } = splitImageRef(ref);
    if (digest) return ref;
    if (!tag) throw new ImageResolveError(`image ${ref} has no tag`);
    const { base, name } = registryLocation(repository);
    const url = `${base}/v2/${name}/manifests/${tag}`;
    try {
      let res = await this.head(url);
      if (res.status === 401) {
        const token = await this.token(res.headers.get('www-authenticate') ?? '');
        res = await this.head(url, token);
      }
      if (res.status !== 200) throw new ImageResolveError(`resolve ${ref}: registry answered HTTP ${res.status} for ${url}`);
      const d = res.headers.get('docker-content-digest');
      if (!d || !/^sha256:[0-9a-f]{64}$/.test(d)) throw new ImageResolveError(`resolve ${ref}: registry gave no valid Docker-Content-Digest`);
      return `${repository}:${tag}@${d}`;
    } catch (err) {
      if (err instanceof ImageResolveError) throw err;
      throw new ImageResolveError(`resolve ${ref}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private head(url: string, token?: string): Promise<Response> {
    return fetch(url, {
      method: 'HEAD',
      headers: { accept: ACCEPT, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15_000),
    });
  }

  private async token(challenge: string): Promise<string> {
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!/^Bearer /i.test(challenge) || !params.realm) throw new ImageResolveError(`unsupported registry auth challenge: ${challenge}`);
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set('service', params.service);
    if (params.scope) u.searchParams.set('scope', params.scope);
    const res = await fetch(u, { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15_000) });
    if (!res.ok) throw new ImageResolveError(`registry token request failed: HTTP ${res.status}`);
    const body = (await res.json()) as { token?: string; access_token?: string };
    const t = body.token ?? body.access_token;
    if (!t) throw new ImageResolveError('registry token response had no token');
    return t;
  }
}
