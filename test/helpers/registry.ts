/** Resolves `127.0.0.1:5000/repo:tag` to its manifest digest through the local registry's API. */
export async function registryDigest(ref: string): Promise<string> {
  const m = /^([^/]+)\/(.+):([^:@]+)$/.exec(ref);
  if (!m) throw new Error(`not a registry/repo:tag reference: ${ref}`);
  const res = await fetch(`http://${m[1]}/v2/${m[2]}/manifests/${m[3]}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
  });
  const d = res.headers.get('docker-content-digest');
  if (!res.ok || !d) throw new Error(`registry gave no digest for ${ref} (HTTP ${res.status})`);
  return d;
}
