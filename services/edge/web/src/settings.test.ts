// Display settings: what local storage may hold, and how the theme is chosen.

import { describe, expect, it } from 'vitest';

import { kDefaultSettings, parseSettings, resolveTheme } from './settings';

describe('settings', () => {
  it('reads what was saved', () => {
    expect(parseSettings('{"fontSize":18,"theme":"dark"}')).toEqual({ fontSize: 18, theme: 'dark', screenReader: false });
    expect(parseSettings('{"fontSize":12,"theme":"auto","screenReader":true}')).toEqual({
      fontSize: 12,
      theme: 'auto',
      screenReader: true,
    });
  });

  it('falls back to the defaults for anything else', () => {
    expect(parseSettings(null)).toEqual(kDefaultSettings);
    expect(parseSettings('not json')).toEqual(kDefaultSettings);
    expect(parseSettings('{"fontSize":7,"theme":"neon"}')).toEqual(kDefaultSettings);
    expect(parseSettings('{"fontSize":"16"}')).toEqual({ fontSize: 16, theme: 'auto', screenReader: false });
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
