/**
 * Splits a stream of newline-delimited JSON objects (Docker's pull progress and event
 * streams) into parsed objects. Lines that are not valid JSON are passed to `onBadLine`
 * and otherwise skipped, so one garbled line never ends the stream.
 */
export function onJsonLines(
  stream: NodeJS.ReadableStream,
  onObject: (obj: Record<string, unknown>) => void,
  onBadLine?: (line: string) => void,
): void {
  let buf = '';
  stream.on('data', (chunk: Buffer | string) => {
    buf += chunk.toString();
    let pos: number;
    while ((pos = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, pos).trim();
      buf = buf.slice(pos + 1);
      if (!line) continue;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch {
        onBadLine?.(line);
        continue;
      }
      if (obj && typeof obj === 'object') onObject(obj as Record<string, unknown>);
    }
  });
}

/**
 * Splits Docker's multiplexed stdout/stderr framing (8-byte headers: stream type, 3 zero
 * bytes, big-endian length) held entirely in `buf`. A buffer that does not start with a
 * valid header (a TTY container's raw output) is returned as is.
 */
export function demuxBuffer(buf: Buffer): string {
  const parts: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 8 > buf.length) return off === 0 ? buf.toString('utf8') : Buffer.concat(parts).toString('utf8');
    const type = buf[off];
    if (type !== 0 && type !== 1 && type !== 2) return off === 0 ? buf.toString('utf8') : Buffer.concat([...parts, buf.subarray(off)]).toString('utf8');
    const len = buf.readUInt32BE(off + 4);
    parts.push(buf.subarray(off + 8, Math.min(buf.length, off + 8 + len)));
    off += 8 + len;
  }
  return Buffer.concat(parts).toString('utf8');
}
