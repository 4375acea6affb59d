// What a denial adds to help the user recover, from what policy allows on the target (the
// "Allowed here" list the page already has): the allowed forms of a program that is allowed in
// some form, or the nearest allowed program names for one that is not.

import type { AllowedCommand } from './api';
import { t } from './i18n';

// Optimal string alignment distance (Levenshtein plus swapping two neighbours: jstakc → jstack).
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

// Lines to print under a denial of `line` (none when nothing helps). Programs are compared
// by name only (a path such as /usr/bin/jstack names jstack).
export function denialHints(line: string, commands: AllowedCommand[]): string[] {
  const word = line.trim().split(/\s+/)[0] ?? '';
  const program = word.slice(word.lastIndexOf('/') + 1);
  if (!program || commands.length === 0) return [];
  const forms = commands.filter((c) => c.program === program);
  if (forms.length > 0) {
    const usages = [...new Set(forms.map((c) => c.usage ?? c.program))];
    return [t('hint.allowedAs', { program, usages: usages.join('  ·  ') })];
  }
  // Close enough to be a typo: one edit for short names, two from six letters on.
  const limit = program.length >= 6 ? 2 : 1;
  const near = [...new Set(commands.map((c) => c.program))]
    .map((p) => ({ p, d: editDistance(program.toLowerCase(), p.toLowerCase()) }))
    .filter(({ d }) => d <= limit)
    .sort((x, y) => x.d - y.d || x.p.localeCompare(y.p))
    .slice(0, 3)
    .map(({ p }) => p);
  return near.length > 0 ? [t('hint.didYouMean', { programs: near.join(t('hint.or')) })] : [];
}

// Text from the server shown in the terminal: no control characters (an escape sequence in a
// policy's text must not restyle or move the terminal), at most 300 characters.
export function plainText(value: unknown): string {
  const text = String(value ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 299)}…` : text;
}

// Lines to print under a denial from what policy said: the deciding rule's description and
// whom to ask (the rule's or the policy's contact and request URL). Only http(s) URLs are shown
// (the terminal makes them links).
export function denialHelp(m: Record<string, unknown>): string[] {
  const out: string[] = [];
  const description = plainText(m.description);
  if (description) out.push(t('hint.ruleSays', { text: description }));
  const contact = plainText(m.contact);
  if (contact) out.push(t('hint.askContact', { contact }));
  const url = plainText(m.requestUrl);
  if (/^https?:\/\/[^\s]+$/i.test(url)) out.push(t('hint.askUrl', { url }));
  return out;
}
