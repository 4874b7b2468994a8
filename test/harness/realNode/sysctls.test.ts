import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSysctls, sysctlChanges, writeSysctl } from './sysctls.js';

const cases: { name: string; before: Record<string, string>; now: Record<string, string>; expect: string[] }[] = [
  { name: 'unchanged values: nothing to restore', before: { 'vm/overcommit_memory': '0' }, now: { 'vm/overcommit_memory': '0' }, expect: [] },
  { name: 'a changed value is restored', before: { 'kernel/panic': '0' }, now: { 'kernel/panic': '10' }, expect: ['kernel/panic'] },
  { name: 'a key that appeared (a new interface) is not ours to restore', before: {}, now: { 'net/ipv4/conf/cni0/forwarding': '1' }, expect: [] },
  { name: 'a key that vanished (its interface went) is skipped', before: { 'net/ipv4/conf/veth1/forwarding': '0' }, now: {}, expect: [] },
  { name: 'volatile keys are never restored', before: { 'kernel/ns_last_pid': '10' }, now: { 'kernel/ns_last_pid': '99' }, expect: [] },
];

describe('sysctlChanges', () => {
  for (const c of cases) it(c.name, () => expect(sysctlChanges(c.before, c.now).map((x) => x.key)).toEqual(c.expect));
});

describe('readSysctls / writeSysctl', () => {
  it('reads writable entries by path (dots in names kept) and writes one back', () => {
    const root = mkdtempSync(join(tmpdir(), 'sysctl-'));
    try {
      mkdirSync(join(root, 'net/ipv4/conf/eth0.100'), { recursive: true });
      writeFileSync(join(root, 'net/ipv4/conf/eth0.100/forwarding'), '0\n', { mode: 0o644 });
      writeFileSync(join(root, 'net/ipv4/readonly'), '1\n', { mode: 0o444 });
      expect(readSysctls(root)).toEqual({ 'net/ipv4/conf/eth0.100/forwarding': '0' });
      writeSysctl('net/ipv4/conf/eth0.100/forwarding', '1', root);
      expect(readSysctls(root)['net/ipv4/conf/eth0.100/forwarding']).toBe('1');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
