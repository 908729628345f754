import { describe, expect, it } from 'vitest';
import { ApplyError } from '../../shared/errors/index.js';
import { parsePinnedRef } from '../../agent/driver/ref.js';
import { demuxBuffer } from '../../agent/driver/jsonlines.js';
import { toContainerState } from '../../agent/driver/types.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('parsePinnedRef', () => {
  it('splits repo, tag and digest; pulls by repo@digest only', () => {
    expect(parsePinnedRef(`127.0.0.1:5000/kb/redis:7.0-kb1@${D}`)).toEqual({
      repo: '127.0.0.1:5000/kb/redis', tag: '7.0-kb1', digest: D, byDigest: `127.0.0.1:5000/kb/redis@${D}`,
    });
    expect(parsePinnedRef(`127.0.0.1:5000/kb/redis@${D}`)).toEqual({
      repo: '127.0.0.1:5000/kb/redis', digest: D, byDigest: `127.0.0.1:5000/kb/redis@${D}`,
    });
    expect(parsePinnedRef(`redis:7.2.5-alpine@${D}`).byDigest).toBe(`redis@${D}`);
  });

  it('refuses refs not pinned by digest', () => {
    for (const ref of ['redis:7.2.5-alpine', '127.0.0.1:5000/kb/redis', `redis@sha256:abc`, `@${D}`, `redis:7@${D.toUpperCase()}`]) {
      expect(() => parsePinnedRef(ref)).toThrow(ApplyError);
      expect(() => parsePinnedRef(ref)).toThrow(`image ${ref} is not pinned by digest`);
    }
  });
});

describe('demuxBuffer', () => {
  const frame = (type: number, text: string): Buffer => {
    const body = Buffer.from(text);
    const h = Buffer.alloc(8);
    h.writeUInt8(type, 0);
    h.writeUInt32BE(body.length, 4);
    return Buffer.concat([h, body]);
  };
  it('joins stdout and stderr frames in order', () => {
    expect(demuxBuffer(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n'), frame(1, 'end')]))).toBe('out\nerr\nend');
  });
  it('passes raw (TTY) output through', () => {
    expect(demuxBuffer(Buffer.from('plain text output'))).toBe('plain text output');
    expect(demuxBuffer(Buffer.alloc(0))).toBe('');
  });
});

describe('toContainerState', () => {
  it('keeps known engine states and maps anything else to dead', () => {
    expect(toContainerState('running')).toBe('running');
    expect(toContainerState('exited')).toBe('exited');
    expect(toContainerState('weird')).toBe('dead');
    expect(toContainerState(undefined)).toBe('dead');
  });
});
