// The reader's display settings: text size, theme, screen-reader mode and language, kept in local
// storage (per browser profile, like history). The theme follows the system (prefers-color-scheme)
// and the language the browser (navigator.languages) until one is chosen.

import type { LanguageChoice } from './i18n';

export type ThemeChoice = 'auto' | 'light' | 'dark';
export type Theme = 'light' | 'dark';

export interface Settings {
  fontSize: number;
  theme: ThemeChoice;
  // xterm's screen-reader mode (an accessibility tree of the terminal's rows).
  screenReader: boolean;
  // 'auto': the browser's preferred languages decide (i18n.ts detectLanguage).
  language: LanguageChoice;
}

export const kFontSizes = [12, 13, 14, 16, 18, 20];
export const kDefaultSettings: Settings = { fontSize: 14, theme: 'auto', screenReader: false, language: 'auto' };
const kSettingsKey = 'podgate.settings';

// What is stored, checked: anything unknown or out of range falls back to the default.
export function parseSettings(text: string | null): Settings {
  if (!text) return { ...kDefaultSettings };
  try {
    const v = JSON.parse(text) as Partial<Settings>;
    return {
      fontSize: kFontSizes.includes(Number(v.fontSize)) ? Number(v.fontSize) : kDefaultSettings.fontSize,
      theme: v.theme === 'light' || v.theme === 'dark' || v.theme === 'auto' ? v.theme : kDefaultSettings.theme,
      screenReader: v.screenReader === true,
      language: v.language === 'en' || v.language === 'zh-CN' ? v.language : kDefaultSettings.language,
    };
  } catch {
    return { ...kDefaultSettings };
  }
}

export function loadSettings(): Settings {
  try {
    return parseSettings(localStorage.getItem(kSettingsKey));
  } catch {
    return { ...kDefaultSettings };
  }
}

export function saveSettings(s: Settings): void {
  try {
    localStorage.setItem(kSettingsKey, JSON.stringify(s));
  } catch {
    // Storage full or disabled: the choice lasts for this page only.
  }
}

export function resolveTheme(choice: ThemeChoice, prefersDark: boolean): Theme {
  return choice === 'auto' ? (prefersDark ? 'dark' : 'light') : choice;
}
