/**
 * Field-level checks for servers.tsv values. Pure functions, no I/O.
 */

const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * True for a dotted-quad IPv4 address: exactly four decimal octets 0-255, no leading zeros
 * (`010.0.0.1` is rejected: tools disagree on whether it is octal).
 */
export function isIPv4(value: string): boolean {
  const parts = value.split('.');
  return parts.length === 4 && parts.every((p) => OCTET.test(p) && Number(p) <= 255);
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * True for a hostname usable as one DNS label: lowercase letters, digits and '-', 1-63
 * characters, not starting or ending with '-'.
 */
export function isDnsLabel(value: string): boolean {
  return DNS_LABEL.test(value);
}
