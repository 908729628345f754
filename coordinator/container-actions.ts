import { randomUUID } from 'node:crypto';
import type { ContainerActionKind, ContainerActionResult } from '../proto/types.js';
import { KbError } from '../shared/errors/index.js';
import type { SessionRegistry } from './sessions.js';

/** Thrown when an agent cannot be asked, does not answer, or fails a container action. */
export class ContainerActionError extends KbError {
  override name = 'ContainerActionError';
}

export interface ContainerActionRequest {
  node: string;
  module: string;
  container: string;
  action: ContainerActionKind;
  /** stop/kill/pause: how long the agent keeps the container so at most. */
  holdMs?: number;
}

/**
 * Asks the agent of `req.node` to act on one of its containers and waits for its answer
 * (at most `timeoutMs`). Resolves with the result and the coordinator's clock when the
 * answer arrived; throws ContainerActionError when the node is not connected, the agent
 * reports a failure, or no answer comes.
 */
export function requestContainerAction(
  sessions: SessionRegistry, req: ContainerActionRequest, timeoutMs = 30_000,
): Promise<{ result: ContainerActionResult; receivedMs: number }> {
  const session = sessions.get(req.node);
  const what = `${req.action} ${req.module}/${req.container} on ${req.node}`;
  if (!session) return Promise.reject(new ContainerActionError(`${what}: agent not connected`));
  const id = randomUUID();
  return new Promise((resolve, reject) => {
    const done = (fn: () => void) => {
      clearTimeout(timer);
      sessions.off('actionResult', onResult);
      sessions.off('disconnected', onGone);
      fn();
    };
    const onResult = (node: string, r: ContainerActionResult) => {
      if (node !== req.node || r.id !== id) return;
      const receivedMs = Date.now();
      done(() => (r.ok ? resolve({ result: r, receivedMs }) : reject(new ContainerActionError(`${what}: ${r.error}`))));
    };
    const onGone = (s: { node: string }) => {
      if (s.node === req.node) done(() => reject(new ContainerActionError(`${what}: agent disconnected before answering`)));
    };
    const timer = setTimeout(() => done(() => reject(new ContainerActionError(`${what}: no answer within ${timeoutMs} ms`))), timeoutMs);
    sessions.on('actionResult', onResult);
    sessions.on('disconnected', onGone);
    session.send({ containerAction: { id, module: req.module, container: req.container, action: req.action, holdMs: req.holdMs ?? 0 } });
  });
}
