/**
 * Typed errors shared by the coordinator, the agent and kbctl. Each has a stable `name`
 * (safe to switch on) and keeps the underlying error as `cause`. Messages say what failed
 * and where (file:line, node, module), never a secret value.
 */

export class KbError extends Error {
  override name = 'KbError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** One problem found in an input file, located by 1-based line (and column when known). */
export interface Problem {
  file: string;
  line: number;
  column?: number;
  field?: string;
  message: string;
}

/** `FILE:LINE: message` (the format `kbctl validate` prints). */
export function formatProblem(p: Problem): string {
  const where = p.column ? `${p.file}:${p.line}:${p.column}` : `${p.file}:${p.line}`;
  return `${where}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

/** Thrown when an input file (servers.tsv, versions.yaml, module settings) is invalid. Carries every problem found. */
export class InputError extends KbError {
  override name = 'InputError';
  constructor(readonly problems: Problem[], options?: { cause?: unknown }) {
    super(problems.map(formatProblem).join('\n'), options);
  }
}

/** Thrown when a module name is not one kb knows. */
export class UnknownModuleError extends KbError {
  override name = 'UnknownModuleError';
  constructor(readonly module: string, known: readonly string[]) {
    super(`unknown module "${module}" (known modules: ${known.join(', ')})`);
  }
}

/** Thrown when a node name is not in the inventory (or not managed by the module asked for). */
export class UnknownNodeError extends KbError {
  override name = 'UnknownNodeError';
  constructor(readonly node: string, where: string) {
    super(`node "${node}" is not in ${where}`);
  }
}

/** Thrown when an image reference cannot be resolved to a digest. */
export class ImageResolveError extends KbError {
  override name = 'ImageResolveError';
}

/** Thrown when the agent fails to apply a module state; message names the step and container. */
export class ApplyError extends KbError {
  override name = 'ApplyError';
}

/** Returns `err.message` for Errors, String(err) otherwise. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
