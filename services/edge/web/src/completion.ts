// Tab completion from what policy says the user may run on the target (/api/v1/allowed):
// program names first, then the program's flags and subcommands, and the usage when a value
// is expected. Completion only guides: exec and policy decide on the submitted line.

import type { AllowedCommand } from './api';
import type { Completion } from './lineeditor';
import { t } from './i18n';

export function makeCompleter(commands: AllowedCommand[]) {
  return (line: string, cursor: number): Completion => complete(commands, line, cursor);
}

export function complete(commands: AllowedCommand[], line: string, cursor: number): Completion {
  const before = line.slice(0, cursor);
  const from = before.search(/\S*$/);
  const words = before.slice(0, from).trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) {
    const seen = new Map<string, string>();
    for (const c of commands) {
      if (!seen.has(c.program)) seen.set(c.program, c.description ?? '');
    }
    const candidates = [...seen].map(([value, description]) => ({ value, description }));
    return {
      from,
      candidates,
      hint: candidates.length === 0 ? t('complete.noCommand') : undefined,
    };
  }
  const program = words[0];
  const rules = commands.filter((c) => c.program === program);
  if (rules.length === 0) {
    return { from, candidates: [], hint: t('complete.noProgram', { program }) };
  }
  const usage = rules.map((r) => t('complete.usage', { usage: r.usage ?? r.program })).join('\r\n');
  // The word before the cursor's word: a flag that takes a value wants a value now.
  const previous = words[words.length - 1];
  for (const r of rules) {
    const f = r.flags?.find((x) => x.name === previous);
    if (f?.takes_value) {
      const what = f.value_type ? `<${f.value_type}>` : t('complete.value');
      return {
        from,
        candidates: [],
        hint: `${previous} ${what}${f.description ? ': ' + f.description : ''}`,
      };
    }
  }
  const used = new Set(words.slice(1));
  const candidates: { value: string; description?: string }[] = [];
  const add = (value: string, description?: string) => {
    if (!candidates.some((c) => c.value === value)) candidates.push({ value, description });
  };
  for (const r of rules) {
    for (const f of r.flags ?? []) {
      if (used.has(f.name)) continue;
      const value = f.takes_value && f.value_type ? ` <${f.value_type}>` : '';
      add(f.name, `${f.description ?? ''}${value}`.trim() || undefined);
    }
    for (const s of r.subcommands ?? []) {
      if (!used.has(s)) add(s, undefined);
    }
  }
  return { from, candidates, hint: usage };
}
