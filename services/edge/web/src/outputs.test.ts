// The kept outputs: exact bytes, bounded by count and bytes, the newest kept first.

import { describe, expect, it } from 'vitest';

import { OutputStore, formatBytes, joinChunks, outputFileName } from './outputs';

const bytes = (...v: number[]) => new Uint8Array(v);

describe('kept command outputs', () => {
  it('keeps the bytes exactly as written, stdout and stderr in arrival order', () => {
    const s = new OutputStore();
    s.begin('c1', 'cat x');
    const buf = bytes(0, 255, 10, 0xe4, 0xbd);
    s.append('c1', buf);
    buf[0] = 7; // the connection reuses its buffer: the kept copy does not change
    s.append('c1', bytes(0xa0, 13, 10));
    s.end('c1');
    expect([...joinChunks(s.find('c1')!)]).toEqual([0, 255, 10, 0xe4, 0xbd, 0xa0, 13, 10]);
    expect(s.last()?.id).toBe('c1');
    expect(s.totalBytes).toBe(8);
  });

  it('keeps the newest commands, at most so many', () => {
    const s = new OutputStore(3, 1000);
    for (let i = 1; i <= 5; i++) {
      s.begin(`c${i}`, `echo ${i}`);
      s.append(`c${i}`, bytes(i));
      s.end(`c${i}`);
    }
    expect(s.size).toBe(3);
    expect(s.find('c2')).toBeUndefined();
    expect(s.find('c3')?.bytes).toBe(1);
    expect(s.totalBytes).toBe(3);
  });

  it('makes room from older commands, and keeps the start of one over the whole budget', () => {
    const s = new OutputStore(10, 10);
    s.begin('a', 'a');
    s.append('a', new Uint8Array(6));
    s.end('a');
    s.begin('b', 'b');
    s.append('b', new Uint8Array(6));
    expect(s.find('a')).toBeUndefined();
    expect(s.find('b')?.bytes).toBe(6);
    s.append('b', new Uint8Array(6));
    expect(s.find('b')?.bytes).toBe(10);
    expect(s.find('b')?.dropped).toBe(2);
    s.append('b', new Uint8Array(3));
    expect(s.find('b')?.dropped).toBe(5);
    expect(s.totalBytes).toBe(10);
    expect(s.last()).toBeUndefined(); // b still runs
  });

  it('ignores output of a command it does not know', () => {
    const s = new OutputStore();
    s.append('zz', bytes(1));
    expect(s.totalBytes).toBe(0);
  });

  it('names files after the command and the time', () => {
    const when = new Date(2026, 11, 1, 17, 35, 0);
    expect(outputFileName('jstack 1234', when)).toBe('jstack-1234-20261201-173500.txt');
    expect(outputFileName('cat /var/log/app/x.log', when)).toBe('cat-var-log-app-x.log-20261201-173500.txt');
    expect(outputFileName('  ', when)).toBe('output-20261201-173500.txt');
    expect(outputFileName('ls ../../etc', when)).toBe('ls-etc-20261201-173500.txt');
    expect(outputFileName('.hidden', when)).toBe('hidden-20261201-173500.txt');
  });

  it('formats sizes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(12595)).toBe('12.3 KiB');
    expect(formatBytes(4 * 1024 * 1024)).toBe('4.0 MiB');
  });
});
