/**
 * grpc-js sets the TLS server name to the target host even when it is an IP address, and
 * Node then warns once per process (DEP0123). The certificate is still checked against the
 * target's IP SANs, so for kb's IP-addressed coordinators the warning is only noise on
 * kbctl's stderr and in agent logs. Every other warning passes through.
 */
export function silenceIpServernameWarning(): void {
  const original = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const opt = args[1];
    const code = opt && typeof opt === 'object' ? (opt as { code?: unknown }).code : args[2];
    if (code === 'DEP0123') return;
    original(...args);
  }) as typeof process.emitWarning;
}
