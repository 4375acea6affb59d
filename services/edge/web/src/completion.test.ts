// Completion of argument values: where a path's listing comes from (only an `ls` policy allows
// on that folder), how listings and jps output are read, and what is offered above the allowed
// folders. The listing itself runs through exec in the browser test; here `run` answers with
// the output a real `ls`/`jps` prints.

import { describe, expect, it } from 'vitest';

import type { AllowedCommand } from './api';
import { argAt, complete, dirUnder, listingCommand, makeCompleter, parseJps, parseListing, plainPath } from './completion';

const CAT: AllowedCommand = {
  rule: 'dev-cat-logs',
  program: 'cat',
  usage: 'cat <file>...',
  args: [{ name: 'file', kind: 'path', path_prefixes: ['/var/log/app'], repeated: true }],
};
const TAIL: AllowedCommand = {
  rule: 'dev-tail',
  program: 'tail',
  usage: 'tail [-n <integer(1..10000)>] <file>',
  flags: [{ name: '-n', takes_value: true, value_type: 'integer(1..10000)' }],
  args: [{ name: 'file', kind: 'path', path_prefixes: ['/var/log/app', '/srv/data/'] }],
};
const JSTACK: AllowedCommand = {
  rule: 'dev-jstack',
  program: 'jstack',
  usage: 'jstack [-l] <pid>',
  flags: [{ name: '-l' }],
  args: [{ name: 'pid', kind: 'pid', jvm: true }],
};
const JPS: AllowedCommand = { rule: 'dev-jps', program: 'jps', usage: 'jps' };
const LS_LONG: AllowedCommand = {
  rule: 'ls-long',
  program: 'ls',
  usage: 'ls -l <dir>',
  flags: [{ name: '-l' }],
  args: [{ name: 'dir', kind: 'path', path_prefixes: ['/var/log'] }],
};
const LS_MARKED: AllowedCommand = {
  rule: 'ls-marked',
  program: 'ls',
  usage: 'ls [-p] <dir>',
  flags: [{ name: '-p' }],
  args: [{ name: 'dir', kind: 'path', path_prefixes: ['/var/log/app'] }],
};

// A run that records what it was asked and answers from `outputs`.
function recorder(outputs: Record<string, string | { error: string }>) {
  const asked: string[] = [];
  const run = (line: string) => {
    asked.push(line);
    const out = outputs[line];
    if (out === undefined) return Promise.resolve({ error: `unexpected ${line}` });
    return Promise.resolve(typeof out === 'string' ? { stdout: out } : out);
  };
  return { asked, run };
}

describe('argument positions', () => {
  it('skips flags and their values, and a repeated argument takes the rest', () => {
    expect(argAt(TAIL, [])?.name).toBe('file');
    expect(argAt(TAIL, ['-n', '20'])?.name).toBe('file');
    expect(argAt(TAIL, ['-n', '20', '/var/log/app/a.log'])).toBeUndefined();
    expect(argAt(CAT, ['/var/log/app/a', '/var/log/app/b'])?.name).toBe('file');
    expect(argAt(JSTACK, ['-l'])?.kind).toBe('pid');
    expect(argAt(JSTACK, ['--', '-l'])).toBeUndefined();
  });
});

describe('paths', () => {
  it('knows which folders lie under a prefix and which are plain', () => {
    expect(dirUnder('/var/log/app/', '/var/log/app')).toBe(true);
    expect(dirUnder('/var/log/app/x/', '/var/log/app/')).toBe(true);
    expect(dirUnder('/var/log/application/', '/var/log/app')).toBe(false);
    expect(dirUnder('/var/log/', '/var/log/app')).toBe(false);
    expect(dirUnder('/etc/', '/')).toBe(true);
    expect(plainPath('/var/log/app/')).toBe(true);
    expect(plainPath('/var/log/../../etc/')).toBe(false);
    expect(plainPath('/var/./log/')).toBe(false);
    expect(plainPath('/var//log/')).toBe(false);
    expect(plainPath('/var/my logs/')).toBe(false);
    expect(plainPath('/var/$(id)/')).toBe(false);
    expect(plainPath('var/log/')).toBe(false);
  });

  it('lists with the ls form policy allows there, marking folders when it can', () => {
    expect(listingCommand([LS_LONG, LS_MARKED], '/var/log/app/')).toEqual({ line: 'ls -p /var/log/app/', form: 'p' });
    expect(listingCommand([LS_LONG, LS_MARKED], '/var/log/')).toEqual({ line: 'ls -l /var/log/', form: 'l' });
    expect(listingCommand([LS_LONG, LS_MARKED], '/srv/data/')).toBeNull();
    expect(listingCommand([CAT, TAIL], '/var/log/app/')).toBeNull();
    const plain: AllowedCommand = { rule: 'ls', program: 'ls', args: [{ kind: 'path', path_prefixes: ['/'] }] };
    expect(listingCommand([plain], '/srv/')).toEqual({ line: 'ls /srv/', form: 'plain' });
  });

  it('reads ls output in each form, leaving out names a command line would need quoted', () => {
    expect(parseListing('a.log\nold/\n.hidden\n', 'p')).toEqual([
      { name: 'a.log', dir: false },
      { name: 'old', dir: true },
      { name: '.hidden', dir: false },
    ]);
    const long = [
      'total 12',
      'drwxr-xr-x 2 root root 4096 Dec  1 20:27 archive',
      '-rw-r--r-- 1 app  app   120 Dec  1 20:27 server.log',
      'lrwxrwxrwx 1 root root    9 Dec  1 20:27 current -> server.log',
      'crw-rw-rw- 1 root root 1, 3 Dec  1 20:27 null',
      '-rw-r--r-- 1 app  app     0 12月  1 20:27 日志.txt',
      '-rw-r--r-- 1 app  app     0 Dec  1 20:27 with space.log',
      '',
    ].join('\n');
    expect(parseListing(long, 'l')).toEqual([
      { name: 'archive', dir: true },
      { name: 'server.log', dir: false },
      { name: 'current', dir: false },
      { name: 'null', dir: false },
      { name: '日志.txt', dir: false },
    ]);
    expect(parseListing("one\n$(reboot)\nit's\nback\\slash\n\x1b[31mred\ntwo\n", 'plain')).toEqual([
      { name: 'one', dir: false },
      { name: 'two', dir: false },
    ]);
    expect(parseListing('x\n'.repeat(5000), 'plain')).toHaveLength(2000);
    // Nothing that could steer the terminal or disguise a name: C1 CSI, bidi overrides, zero width.
    expect(parseListing('a\u009b31m\nb\u202egol.exe\nc\u200bd\nok\n', 'plain')).toEqual([{ name: 'ok', dir: false }]);
  });

  it('offers the allowed folders, then the way down to them, then a listing', async () => {
    const { asked, run } = recorder({ 'ls -p /var/log/app/': 'a.log\nb.log\narchive/\n' });
    const commands = [CAT, LS_LONG, LS_MARKED];
    // Nothing typed: the prefix.
    const first = complete(commands, 'cat ', 4, run);
    expect(first.candidates).toEqual([{ value: '/var/log/app/', partial: true }]);
    // Above it: one folder at a time.
    const above = complete(commands, 'cat /var/', 9, run);
    expect(above.candidates).toEqual([{ value: '/var/log/', display: 'log/', partial: true }]);
    expect(asked).toEqual([]);
    // Under it: the listing, folders without the trailing space.
    const under = complete(commands, 'cat /var/log/app/b', 18, run);
    expect(under.candidates).toEqual([]);
    const listed = await under.pending!;
    expect(asked).toEqual(['ls -p /var/log/app/']);
    expect(listed.from).toBe(4);
    expect(listed.candidates).toEqual([
      { value: '/var/log/app/a.log', display: 'a.log', partial: false },
      { value: '/var/log/app/b.log', display: 'b.log', partial: false },
      { value: '/var/log/app/archive/', display: 'archive/', partial: true },
    ]);
  });

  it('says why nothing is listed: no ls rule there, a path that is not plain, a failed listing', async () => {
    const noLs = complete([CAT], 'cat /var/log/app/', 17, recorder({}).run);
    expect(noLs.pending).toBeUndefined();
    expect(noLs.hint).toMatch(/no rule lets you list \/var\/log\/app\//);
    const dotdot = complete([CAT, LS_MARKED], 'cat /var/log/app/../', 20, recorder({}).run);
    expect(dotdot.hint).toMatch(/plain absolute folders/);
    const denied = complete([CAT, LS_MARKED], 'cat /var/log/app/', 17, recorder({ 'ls -p /var/log/app/': { error: 'denied: no' } }).run);
    expect((await denied.pending!).hint).toBe('ls -p /var/log/app/: denied: no');
    const empty = complete([CAT, LS_MARKED], 'cat /var/log/app/', 17, recorder({ 'ls -p /var/log/app/': '' }).run);
    expect((await empty.pending!).hint).toBe('/var/log/app/ is empty');
    // Outside every prefix: only the usage.
    const outside = complete([CAT, LS_MARKED], 'cat /etc/', 9, recorder({}).run);
    expect(outside.candidates).toEqual([]);
    expect(outside.pending).toBeUndefined();
  });

  it('reuses a listing for a while instead of running ls on every Tab', async () => {
    const { asked, run } = recorder({ 'ls -p /var/log/app/': 'a.log\n' });
    const completer = makeCompleter([CAT, LS_MARKED], run);
    await completer('cat /var/log/app/', 17).pending;
    await completer('cat /var/log/app/a', 18).pending;
    expect(asked).toEqual(['ls -p /var/log/app/']);
  });
});

describe('JVM pids', () => {
  it('reads jps output without jps itself', () => {
    expect(parseJps('4242 com.example.Shop\n77 Jps\n91\nnoise\n5 evil\u001b]0;x\u0007\n')).toEqual([
      { value: '4242', description: 'com.example.Shop' },
      { value: '91', description: '(main class unknown)' },
    ]);
  });

  it('offers the pids jps lists where policy allows jps, and says so where it does not', async () => {
    const { asked, run } = recorder({ jps: '4242 com.example.Shop\n77 Jps\n' });
    const c = complete([JSTACK, JPS], 'jstack ', 7, run);
    expect((await c.pending!).candidates).toEqual([{ value: '4242', description: 'com.example.Shop' }]);
    expect((await complete([JSTACK, JPS], 'jstack -l ', 10, run).pending!).candidates).toHaveLength(1);
    expect(asked).toEqual(['jps', 'jps']);
    const none = complete([JSTACK], 'jstack ', 7, run);
    expect(none.pending).toBeUndefined();
    expect(none.hint).toMatch(/policy allows no jps here/);
    // Flags still complete.
    expect(complete([JSTACK, JPS], 'jstack -', 8, run).candidates.map((x) => x.value)).toEqual(['-l']);
  });
});
