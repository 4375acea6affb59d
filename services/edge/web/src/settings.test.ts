// Display settings: what local storage may hold, and how the theme is chosen.

import { describe, expect, it } from 'vitest';

import { kDefaultSettings, parseSettings, resolveTheme } from './settings';

describe('settings', () => {
  it('reads what was saved', () => {
    expect(parseSettings('{"fontSize":18,"theme":"dark"}')).toEqual({
      fontSize: 18,
      theme: 'dark',
      screenReader: false,
      language: 'auto',
    });
    expect(parseSettings('{"fontSize":12,"theme":"auto","screenReader":true,"language":"zh-CN"}')).toEqual({
      fontSize: 12,
      theme: 'auto',
      screenReader: true,
      language: 'zh-CN',
    });
    expect(parseSettings('{"language":"en"}').language).toBe('en');
  });

  it('falls back to the defaults for anything else', () => {
    expect(parseSettings(null)).toEqual(kDefaultSettings);
    expect(parseSettings('not json')).toEqual(kDefaultSettings);
    expect(parseSettings('{"fontSize":7,"theme":"neon"}')).toEqual(kDefaultSettings);
    expect(parseSettings('{"fontSize":"16"}')).toEqual({ fontSize: 16, theme: 'auto', screenReader: false, language: 'auto' });
    // A language the page does not speak (or a different spelling) is the browser's choice.
    expect(parseSettings('{"language":"zh-TW"}').language).toBe('auto');
    expect(parseSettings('{"language":"zh-cn"}').language).toBe('auto');
    // Only a stored true turns screen-reader mode on.
    expect(parseSettings('{"screenReader":"yes"}').screenReader).toBe(false);
    expect(parseSettings('[]')).toEqual(kDefaultSettings);
  });

  it('follows the system until a theme is chosen', () => {
    expect(resolveTheme('auto', true)).toBe('dark');
    expect(resolveTheme('auto', false)).toBe('light');
    expect(resolveTheme('light', true)).toBe('light');
    expect(resolveTheme('dark', false)).toBe('dark');
  });
});
