import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  caPin, certInfo, createCa, createCsr, curlPin, formatToken, generateKeyPair, hashSecret, importKeyPairPem, isIssuedBy, issueCertificate,
  newTokenParts, normalizeSerial, parseCsr, parseToken, PkiError, secretMatches, TokenFormatError,
} from '../../shared/tls/index.js';
import { parseDuration, formatDuration } from '../../shared/duration/index.js';

describe('x509: CA, CSR, issuance', () => {
  it('issues a node certificate from a CSR: CN and SAN are the node, OU says the role, signed by the CA only', async () => {
    const ca = await createCa();
    const caKey = await importKeyPairPem(ca.keyPem);
    const nodeKeys = await generateKeyPair();
    const csr = await parseCsr(await createCsr('redis-01', nodeKeys));
    expect(csr.commonName).toBe('redis-01');
    const issued = await issueCertificate({ role: 'node', commonName: csr.commonName, publicKey: csr.publicKey, sans: ['redis-01'], ttlMs: 30 * 86_400_000, ca: { certPem: ca.certPem, key: caKey.privateKey } });
    const info = certInfo(issued.certPem);
    expect(info).toMatchObject({ commonName: 'redis-01', role: 'node', sans: ['redis-01'], serial: issued.serial });
    expect(info.notAfterMs).toBe(Math.floor(issued.notAfterMs / 1000) * 1000);
    expect(info.notAfterMs - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(isIssuedBy(issued.certPem, ca.certPem)).toBe(true);
    expect(isIssuedBy(issued.certPem, (await createCa()).certPem)).toBe(false);
  });

  it('short lifetimes are back-dated by at most a tenth (renewal timing stays meaningful)', async () => {
    const ca = await createCa();
    const k = await generateKeyPair();
    const issued = await issueCertificate({ role: 'node', commonName: 'n1', publicKey: k.publicKey, ttlMs: 20_000, ca: { certPem: ca.certPem, key: (await importKeyPairPem(ca.keyPem)).privateKey } });
    const info = certInfo(issued.certPem);
    expect(info.notAfterMs - info.notBeforeMs).toBeLessThanOrEqual(23_000);
  });

  it('rejects CSRs that are malformed, not P-256, or whose CN is not a hostname', async () => {
    await expect(parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n')).rejects.toThrow(PkiError);
    await expect(createCsr('redis 01; rm -rf', await generateKeyPair())).rejects.toThrow('invalid node name');
  });

  it('pins: the token pin is sha256 of the CA public key (hex); curl pin is base64 of the same for a leaf', async () => {
    const ca = await createCa();
    const { X509Certificate } = await import('node:crypto');
    const spki = new X509Certificate(ca.certPem).publicKey.export({ type: 'spki', format: 'der' });
    expect(caPin(ca.certPem)).toBe(createHash('sha256').update(spki).digest('hex'));
    expect(curlPin(ca.certPem)).toBe(`sha256//${createHash('sha256').update(spki).digest('base64')}`);
  });

  it('serials compare without case or leading zeros', () => {
    expect(normalizeSerial('00AB12')).toBe('ab12');
  });
});

describe('join tokens', () => {
  it('formats and parses K10<pin>::<id>.<secret>; malformed tokens are refused without echoing them', () => {
    const pin = 'a'.repeat(64);
    const { id, secret } = newTokenParts();
    expect(id).toMatch(/^[a-z0-9]{6}$/);
    expect(secret).toMatch(/^[a-z0-9]{24}$/);
    const t = formatToken(pin, id, secret);
    expect(parseToken(t)).toEqual({ pin, id, secret });
    for (const bad of ['', 'K10abc::x.y', `K10${pin}:${id}.${secret}`, `K11${pin}::${id}.${secret}`, `K10${pin}::${id}.${secret}x`]) {
      expect(() => parseToken(bad)).toThrow(TokenFormatError);
      try { parseToken(bad); } catch (err) { expect((err as Error).message).not.toContain(secret); }
    }
  });

  it('secrets are stored as sha256 and compared in constant time', () => {
    const h = hashSecret('s3cret');
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toContain('s3cret');
    expect(secretMatches('s3cret', h)).toBe(true);
    expect(secretMatches('s3creT', h)).toBe(false);
    expect(secretMatches('s3cret', 'zz')).toBe(false);
  });
});

describe('durations', () => {
  it('parses ms, s, m, h, d and names bad input', () => {
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('250')).toBe(250);
    expect(() => parseDuration('1 week')).toThrow('invalid duration "1 week"');
    expect(formatDuration(86_400_000)).toBe('1d');
  });
});
