// The message catalog: both languages say every message with the same placeholders, the
// browser's languages choose one, and t() fills the placeholders (or says which is missing).

import { afterEach, describe, expect, it } from 'vitest';

import { detectLanguage, format, kCatalogs, kLanguages, language, onLanguageChange, placeholders, resolveLanguage, setLanguage, t } from './i18n';
import { formatExit } from './exitline';
import { denialHints } from './suggest';

describe('message catalog', () => {
  afterEach(() => setLanguage('en'));

  it('has every key in every language, with the same placeholders', () => {
    const keys = Object.keys(kCatalogs.en).sort();
    expect(keys.length).toBeGreaterThan(200);
    for (const lang of kLanguages) {
      expect(Object.keys(kCatalogs[lang]).sort()).toEqual(keys);
      for (const key of keys) {
        const text = kCatalogs[lang][key as keyof (typeof kCatalogs)['en']];
        expect(text, `${lang} ${key}`).not.toBe('');
        expect(placeholders(text).sort(), `${lang} ${key}`).toEqual(placeholders(kCatalogs.en[key as keyof (typeof kCatalogs)['en']]).sort());
      }
    }
  });

  it('is translated: no Chinese text is the English one, bar names and symbols', () => {
    // Texts that are the same in both: program and product names, units, numbers.
    const same = new Set(['display.px', 'toolbar.pod', 'toolbar.podAria', 'toolbar.shell', 'audit.pod', 'page.fatal', 'signin.forbidden']);
    for (const [key, text] of Object.entries(kCatalogs.en)) {
      if (same.has(key)) continue;
      expect(kCatalogs['zh-CN'][key as keyof (typeof kCatalogs)['en']], key).not.toBe(text);
    }
  });

  it('fills named placeholders', () => {
    expect(t('status.reconnectingIn', { seconds: 3, attempt: 2 })).toBe('reconnecting in 3 s (attempt 2)');
    expect(t('panel.heading')).toBe('Allowed here');
    setLanguage('zh-CN');
    expect(language()).toBe('zh-CN');
    expect(t('status.reconnectingIn', { seconds: 3, attempt: 2 })).toBe('3 秒后重连（第 2 次尝试）');
    expect(t('panel.heading')).toBe('允许的命令');
    // A value is put in as it is, even when it looks like a placeholder.
    expect(format('{a} {b}', { a: '{b}', b: '你好' })).toBe('{b} 你好');
  });

  it('refuses a message whose parameter is missing, naming it', () => {
    expect(() => format('connected as {user}', {}, 'term.connectedAs')).toThrow('message term.connectedAs needs the parameter {user}');
    // What a caller outside the types (a cast) gets.
    const untyped = t as unknown as (key: string, params?: object) => string;
    expect(() => untyped('term.reconnected', {})).toThrow('{session}');
    expect(() => untyped('term.reconnected')).toThrow('{session}');
  });

  it('tells listeners when the language changes, and only then', () => {
    let calls = 0;
    const off = onLanguageChange(() => calls++);
    setLanguage('en');
    expect(calls).toBe(0);
    setLanguage('zh-CN');
    setLanguage('zh-CN');
    expect(calls).toBe(1);
    off();
    setLanguage('en');
    expect(calls).toBe(1);
  });

  it("words the terminal's own lines in the chosen language, not what the server sent", () => {
    setLanguage('zh-CN');
    const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
    expect(plain(formatExit({ type: 'exit', termination: 'exited', code: 2, duration_ms: 1500 }))).toBe('✗ 退出码 2 · 1.5 s');
    expect(plain(formatExit({ type: 'exit', termination: 'interrupted', duration_ms: 5 }))).toBe('■ 已中断 · 5 ms');
    // The reason is exec's: kept as sent.
    expect(plain(formatExit({ type: 'exit', termination: 'error', reason: 'stream reset', duration_ms: 5 }))).toBe('✗ 错误：stream reset · 5 ms');
    expect(denialHints('jstak 1', [{ rule: 'r', program: 'jstack', usage: 'jstack <pid>' }])).toEqual(['你是不是想输入 jstack？']);
    setLanguage('en');
    expect(plain(formatExit({ type: 'exit', termination: 'exited', code: 0, duration_ms: 10 }))).toBe('✓ exit 0 · 10 ms');
  });
});

describe('language choice', () => {
  it("takes the first language the page speaks from the browser's list", () => {
    expect(detectLanguage(['zh-CN', 'en'])).toBe('zh-CN');
    expect(detectLanguage(['zh'])).toBe('zh-CN');
    expect(detectLanguage(['zh-Hans'])).toBe('zh-CN');
    expect(detectLanguage(['zh-Hans-HK'])).toBe('zh-CN');
    expect(detectLanguage(['zh-SG'])).toBe('zh-CN');
    expect(detectLanguage(['ZH_cn'])).toBe('zh-CN');
    expect(detectLanguage(['en-US', 'zh-CN'])).toBe('en');
    expect(detectLanguage(['de-DE', 'zh-CN', 'en'])).toBe('zh-CN');
    expect(detectLanguage(['fr', 'de'])).toBe('en');
    expect(detectLanguage([])).toBe('en');
  });

  it('passes over Traditional Chinese, which the page does not offer', () => {
    expect(detectLanguage(['zh-TW'])).toBe('en');
    expect(detectLanguage(['zh-HK'])).toBe('en');
    expect(detectLanguage(['zh-Hant'])).toBe('en');
    expect(detectLanguage(['zh-Hant-CN'])).toBe('en');
    // A browser that also lists plain Chinese gets Simplified.
    expect(detectLanguage(['zh-TW', 'zh', 'en'])).toBe('zh-CN');
  });

  it('lets a chosen language win over the browser', () => {
    expect(resolveLanguage('auto', ['zh-CN'])).toBe('zh-CN');
    expect(resolveLanguage('en', ['zh-CN'])).toBe('en');
    expect(resolveLanguage('zh-CN', ['en-GB'])).toBe('zh-CN');
  });
});
