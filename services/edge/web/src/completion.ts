// Tab completion from what policy says the user may run on the target (/api/v1/allowed):
// program names first, then the program's flags and subcommands, and the usage when a value
// is expected. Completion only guides: exec and policy decide on the submitted line.

import type { AllowedArg, AllowedCommand } from './api';
import type { Candidate, Completion } from './lineeditor';
import { t } from './i18n';

// Runs an allowed command without showing it (a completion's listing): exec authorizes, runs
// and audits it like any other. Gives its standard output, or a sentence saying why not.
export type QuietRun = (line: string) => Promise<{ stdout: string } | { error: string }>;

// How long a listing is reused before Tab runs it again.
const kListingTtlMs = 10_000;

export function makeCompleter(commands: AllowedCommand[], run?: QuietRun) {
  const cache = new Map<string, { at: number; result: Promise<{ stdout: string } | { error: string }> }>();
  const cachedRun: QuietRun | undefined = run
    ? (line) => {
        const now = Date.now();
        const hit = cache.get(line);
        if (hit && now - hit.at < kListingTtlMs) return hit.result;
        const result = run(line);
        cache.set(line, { at: now, result });
        if (cache.size > 100) cache.delete(cache.keys().next().value as string);
        return result;
      }
    : undefined;
  return (line: string, cursor: number): Completion => complete(commands, line, cursor, cachedRun);
}

export function complete(
  commands: AllowedCommand[],
  line: string,
  cursor: number,
  run?: QuietRun,
): Completion {
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
  // An argument's value: a path from the directory's listing, a JVM's pid.
  const word = before.slice(from);
  if (!word.startsWith('-')) {
    const args = rules.map((r) => argAt(r, words.slice(1))).filter((a): a is AllowedArg => a !== undefined);
    const path = args.filter((a) => a.kind === 'path');
    if (path.length > 0) return completePath(commands, path, word, from, usage, run);
    if (args.some((a) => a.kind === 'pid' && a.jvm)) return completeJvm(commands, from, usage, run);
  }
  const used = new Set(words.slice(1));
  const candidates: Candidate[] = [];
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

// The positional argument the next word of `rule` would be, after `words` (the words after the
// program): flags and their values are skipped, "--" ends the flags.
export function argAt(rule: AllowedCommand, words: string[]): AllowedArg | undefined {
  const args = rule.args ?? [];
  let index = 0;
  let flagsDone = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (!flagsDone && w === '--') {
      flagsDone = true;
      continue;
    }
    if (!flagsDone && w.startsWith('-') && w.length > 1) {
      const f = rule.flags?.find((x) => x.name === w);
      if (f?.takes_value) i++;
      continue;
    }
    if (index < args.length && args[index].repeated) continue;
    index++;
  }
  return args[index];
}

// Whether directory `dir` ("/var/log/", with its trailing slash) lies under `prefix`.
export function dirUnder(dir: string, prefix: string): boolean {
  const p = prefix.endsWith('/') ? prefix : prefix + '/';
  return dir.startsWith(p);
}

// Whether a path is plain enough to list: absolute, no "." or ".." component, no empty one, and
// nothing a command line would need quoted.
export function plainPath(path: string): boolean {
  if (!path.startsWith('/') || /[\s'"\\$`]/.test(path) || /[\x00-\x1f\x7f]/.test(path)) return false;
  const parts = path.split('/').slice(1, -1);
  return parts.every((p) => p !== '' && p !== '.' && p !== '..');
}

// The listing command that policy allows for `dir`, with the flag that marks directories when
// a rule allows one: `ls -p <dir>`, else `ls -l <dir>`, else `ls <dir>`; null when no rule lets
// `ls` take a path under which `dir` lies.
export function listingCommand(commands: AllowedCommand[], dir: string): { line: string; form: 'p' | 'l' | 'plain' } | null {
  const covering = commands.filter(
    (c) =>
      c.program === 'ls' &&
      (c.args ?? []).some((a) => a.kind === 'path' && (a.path_prefixes ?? []).some((p) => dirUnder(dir, p))),
  );
  if (covering.length === 0) return null;
  const hasFlag = (name: string) => covering.some((c) => (c.flags ?? []).some((f) => f.name === name && !f.takes_value));
  if (hasFlag('-p')) return { line: `ls -p ${dir}`, form: 'p' };
  if (hasFlag('-l')) return { line: `ls -l ${dir}`, form: 'l' };
  return { line: `ls ${dir}`, form: 'plain' };
}

// Text the terminal must not draw from a listing: C0 and C1 controls (escape sequences), and
// the invisible and direction-changing characters that make a name look like another.
const kUnsafeText = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/;

export interface Entry {
  name: string;
  dir: boolean;
}

// The entries of an `ls` listing in the given form (at most 2,000; "." and "..", and names a
// command line would need quoted, left out).
export function parseListing(stdout: string, form: 'p' | 'l' | 'plain'): Entry[] {
  const out: Entry[] = [];
  for (const raw of stdout.split('\n')) {
    if (out.length >= 2000) break;
    let name = raw;
    let dir = false;
    if (form === 'l') {
      // type+mode, links, owner, group, size (or "major, minor"), three date fields, name
      const m = /^([-dlcbps])\S*\s+\d+\s+\S+\s+\S+\s+(?:\d+,\s*)?\d+\s+\S+\s+\S+\s+\S+\s(.+)$/.exec(raw);
      if (!m) continue;
      dir = m[1] === 'd';
      name = m[1] === 'l' ? m[2].split(' -> ')[0] : m[2];
    } else if (form === 'p' && name.endsWith('/')) {
      dir = true;
      name = name.slice(0, -1);
    }
    if (name === '' || name === '.' || name === '..' || name.includes('/')) continue;
    if (/[\s'"\\$`]/.test(name) || kUnsafeText.test(name)) continue;
    out.push({ name, dir });
  }
  return out;
}

function completePath(
  commands: AllowedCommand[],
  args: AllowedArg[],
  word: string,
  from: number,
  usage: string,
  run?: QuietRun,
): Completion {
  const prefixes = [...new Set(args.flatMap((a) => a.path_prefixes ?? []))].map((p) => (p.endsWith('/') ? p : p + '/'));
  const dir = word.slice(0, word.lastIndexOf('/') + 1);
  if (!word.startsWith('/')) {
    // Nothing typed yet: the allowed prefixes.
    return { from, candidates: prefixes.map((p) => ({ value: p, partial: true })), hint: usage };
  }
  if (!prefixes.some((p) => dir.startsWith(p))) {
    // Above the allowed prefixes: the way down to them, one folder at a time.
    const down = new Map<string, Candidate>();
    for (const p of prefixes) {
      if (!p.startsWith(dir)) continue;
      const value = p.slice(0, p.indexOf('/', dir.length) + 1);
      down.set(value, { value, display: value.slice(dir.length), partial: true });
    }
    return { from, candidates: [...down.values()], hint: usage };
  }
  if (!plainPath(dir)) {
    return { from, candidates: [], hint: t('complete.pathNotPlain', { dir }) };
  }
  const listing = listingCommand(commands, dir);
  if (!listing || !run) {
    return { from, candidates: [], hint: `${usage}\r\n${t('complete.noListing', { dir })}` };
  }
  const pending = run(listing.line).then((r): Completion => {
    if ('error' in r) return { from, candidates: [], hint: t('complete.listingFailed', { line: listing.line, error: r.error }) };
    const candidates = parseListing(r.stdout, listing.form).map((e) => ({
      value: dir + e.name + (e.dir ? '/' : ''),
      display: e.name + (e.dir ? '/' : ''),
      partial: e.dir,
    }));
    return { from, candidates, hint: candidates.length === 0 ? t('complete.emptyDir', { dir }) : undefined };
  });
  return { from, candidates: [], pending };
}

// The JVMs' pids from `jps` (pid and main class per line), when policy allows jps here.
export function parseJps(stdout: string): Candidate[] {
  const out: Candidate[] = [];
  for (const raw of stdout.split('\n')) {
    const m = /^(\d{1,7})(?:\s+(\S.*))?$/.exec(raw.trim());
    if (!m || m[2] === 'Jps' || m[2] === 'sun.tools.jps.Jps' || kUnsafeText.test(m[2] ?? '')) continue;
    out.push({ value: m[1], description: m[2] ?? t('complete.jvmUnknown') });
  }
  return out;
}

function completeJvm(commands: AllowedCommand[], from: number, usage: string, run?: QuietRun): Completion {
  const jps = commands.some((c) => c.program === 'jps' && (c.args ?? []).every((a) => a.optional || a.repeated));
  if (!jps || !run) return { from, candidates: [], hint: `${usage}\r\n${t('complete.noJps')}` };
  const pending = run('jps').then((r): Completion => {
    if ('error' in r) return { from, candidates: [], hint: t('complete.listingFailed', { line: 'jps', error: r.error }) };
    const candidates = parseJps(r.stdout);
    return { from, candidates, hint: candidates.length === 0 ? t('complete.noJvm') : undefined };
  });
  return { from, candidates: [], pending };
}
