import { ApplyError } from '../../shared/errors/index.js';

/** An image reference pinned by digest, split into its parts. */
export interface PinnedRef {
  /** Repository with registry host, e.g. `127.0.0.1:5000/kb/redis`. */
  repo: string;
  /** Tag when the ref carried one (informational only: never used to pull). */
  tag?: string;
  /** `sha256:<64 hex>`. */
  digest: string;
  /** `repo@digest`: the only form kb pulls, inspects and runs. */
  byDigest: string;
}

const PINNED = /^(?<name>[^@\s]+)@(?<digest>sha256:[a-f0-9]{64})$/;

/**
 * Parses `repo:tag@sha256:<hex>` or `repo@sha256:<hex>`. Throws `ApplyError`
 * "image <ref> is not pinned by digest" for anything else (a bare tag, a short digest).
 * A colon followed by a path (`host:5000/x`) is a registry port, not a tag.
 */
export function parsePinnedRef(ref: string): PinnedRef {
  const m = PINNED.exec(ref);
  const name = m?.groups?.name;
  const digest = m?.groups?.digest;
  if (!name || !digest) throw new ApplyError(`image ${ref} is not pinned by digest`);
  const colon = name.lastIndexOf(':');
  const hasTag = colon > 0 && !name.slice(colon + 1).includes('/');
  const repo = hasTag ? name.slice(0, colon) : name;
  if (!repo) throw new ApplyError(`image ${ref} is not pinned by digest`);
  return { repo, ...(hasTag ? { tag: name.slice(colon + 1) } : {}), digest, byDigest: `${repo}@${digest}` };
}
