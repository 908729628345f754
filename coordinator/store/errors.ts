import { KbError } from '../../shared/errors/index.js';

/**
 * Thrown when the store cannot be reached or did not answer in time (etcd: every
 * endpoint down, no quorum, deadline exceeded). The write may or may not have landed;
 * callers treat it as transient and retry from stored state.
 */
export class StoreUnavailableError extends KbError {
  override name = 'StoreUnavailableError';
}

/**
 * Thrown when a guarded write was refused because its writer no longer holds the right
 * to write: a leader write after the leadership key changed or expired (another replica
 * leads now, or nobody does), or a replica write after the replica's lease expired.
 * Nothing of the refused write landed. Never retried.
 */
export class FencedWriteError extends KbError {
  override name = 'FencedWriteError';
}

/** Thrown by putRevision when the module already has a revision with that number (revisions are immutable). */
export class RevisionExistsError extends KbError {
  override name = 'RevisionExistsError';
}
