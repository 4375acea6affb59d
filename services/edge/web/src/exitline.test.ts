// The exit line of a command whose output the rule's limit cut: how much was shown of how much.

import { describe, expect, it } from 'vitest';

import { formatExit } from './exitline';
import { setLanguage } from './i18n';

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

describe('the output limit exit line', () => {
  it('says how much was shown of all the command wrote', () => {
    setLanguage('en');
    const line = formatExit({ type: 'exit', termination: 'output_limit', code: 0, duration_ms: 12, output_bytes: 8 * 1024 * 1024, shown_bytes: 4 * 1024 * 1024, output_complete: true });
    expect(plain(line)).toBe(
      "■ output cut at the rule's limit: shown 4.0 MiB of 8.0 MiB · 12 ms\r\n  the rule shows the first 4.0 MiB; narrow the command (tail -n, grep) or download what was shown",
    );
  });

  it('says "more than" when the command was stopped before it ended', () => {
    const line = formatExit({ type: 'exit', termination: 'output_limit', duration_ms: 900, output_bytes: 68157440, shown_bytes: 1000, output_complete: false });
    expect(plain(line).split('\r\n')[0]).toBe("■ output cut at the rule's limit: shown 1000 B of more than 65.0 MiB · 900 ms");
  });

  it('says the last part was shown when the rule keeps the end', () => {
    const line = formatExit({ type: 'exit', termination: 'output_limit', duration_ms: 30, output_bytes: 3 * 1024 * 1024, shown_bytes: 1024 * 1024, output_complete: true, kept_end: true });
    expect(plain(line)).toBe(
      "■ output cut at the rule's limit: shown the last 1.0 MiB of 3.0 MiB · 30 ms\r\n  the rule keeps the end of the output: the last 1.0 MiB, sent when the command ended",
    );
  });

  it('keeps the old words for an exec that does not count', () => {
    expect(plain(formatExit({ type: 'exit', termination: 'output_limit', duration_ms: 5 }))).toBe("■ stopped: the rule's output limit was reached · 5 ms");
  });

  it('in Chinese', () => {
    setLanguage('zh-CN');
    const line = formatExit({ type: 'exit', termination: 'output_limit', duration_ms: 5, output_bytes: 2048, shown_bytes: 1024, output_complete: true });
    expect(plain(line).split('\r\n')[0]).toBe('■ 输出已按规则的限制截断：共 2.0 KiB，显示了 1.0 KiB · 5 ms');
    setLanguage('en');
  });
});
