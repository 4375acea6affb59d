// The line editor against a real terminal emulator (xterm.js's headless build, the same parser
// and buffer the page draws with): what the user sees after each key is checked on the screen.

import { describe, expect, it } from 'vitest';
import { Terminal } from '@xterm/headless';

import { cellWidth, History, LineEditor, visibleWidth, type Completion, type EditorEvent } from './lineeditor';
import { complete } from './completion';
import type { AllowedCommand } from './api';

const PROMPT = '\x1b[1m$\x1b[0m ';

class Screen {
  readonly term: Terminal;
  readonly editor: LineEditor;
  readonly events: EditorEvent[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(cols = 20, rows = 10, history = new History(), commands: AllowedCommand[] | null = null) {
    this.term = new Terminal({ cols, rows, allowProposedApi: true });
    this.editor = new LineEditor(
      (s) => {
        this.chain = this.chain.then(() => new Promise<void>((r) => this.term.write(s, r)));
      },
      () => this.term.cols,
      history,
      commands ? (line, cursor) => complete(commands, line, cursor) : null,
    );
  }
  async start(): Promise<this> {
    this.editor.start(PROMPT);
    await this.flush();
    return this;
  }
  async keys(...data: string[]): Promise<void> {
    for (const d of data) this.events.push(...this.editor.feed(d));
    await this.flush();
  }
  flush(): Promise<void> {
    return this.chain;
  }
  row(y: number): string {
    return this.term.buffer.active.getLine(this.term.buffer.active.baseY + y)?.translateToString(true) ?? '';
  }
  rows(): string[] {
    const out = [];
    for (let y = 0; y < this.term.rows; y++) out.push(this.row(y));
    while (out.length && out[out.length - 1] === '') out.pop();
    return out;
  }
  get cursor(): [number, number] {
    return [this.term.buffer.active.cursorY, this.term.buffer.active.cursorX];
  }
}

const LEFT = '\x1b[D';
const RIGHT = '\x1b[C';
const UP = '\x1b[A';
const DOWN = '\x1b[B';
const HOME = '\x1b[H';
const END = '\x1b[F';
const BS = '\x7f';

describe('LineEditor', () => {
  it('types, moves and inserts in the middle', async () => {
    const s = await new Screen().start();
    await s.keys('hello', LEFT, LEFT, 'X');
    expect(s.editor.line).toBe('helXlo');
    expect(s.rows()).toEqual(['$ helXlo']);
    expect(s.cursor).toEqual([0, 6]);
  });

  it('wraps long lines and backspaces across the wrap', async () => {
    const s = await new Screen(20).start();
    const text = 'abcdefghijklmnopqrstuvwxyz0123';
    await s.keys(text);
    expect(s.rows()).toEqual(['$ abcdefghijklmnopqr', 'stuvwxyz0123']);
    expect(s.cursor).toEqual([1, 12]);
    await s.keys(...Array(13).fill(BS));
    expect(s.editor.line).toBe(text.slice(0, 17));
    expect(s.rows()).toEqual(['$ abcdefghijklmnopq']);
    expect(s.cursor).toEqual([0, 19]);
  });

  it('handles a line that ends exactly at the right margin', async () => {
    const s = await new Screen(20).start();
    await s.keys('x'.repeat(18));
    expect(s.cursor).toEqual([1, 0]);
    await s.keys('y');
    expect(s.rows()).toEqual(['$ ' + 'x'.repeat(18), 'y']);
    await s.keys(BS, BS);
    expect(s.rows()).toEqual(['$ ' + 'x'.repeat(17)]);
    expect(s.cursor).toEqual([0, 19]);
    // Moving left and right over the margin.
    await s.keys('zz', LEFT, LEFT, LEFT);
    expect(s.cursor).toEqual([0, 18]);
    await s.keys(RIGHT, RIGHT, RIGHT);
    expect(s.cursor).toEqual([1, 1]);
  });

  it('moves with Home/End and Ctrl+A/E, and cuts with Ctrl+U/K/W, pasting back with Ctrl+Y', async () => {
    const s = await new Screen(40).start();
    await s.keys('curl -I http://web:8080/health');
    await s.keys(HOME);
    expect(s.cursor).toEqual([0, 2]);
    await s.keys(END);
    expect(s.cursor).toEqual([0, 32]);
    await s.keys('\x17');
    expect(s.editor.line).toBe('curl -I ');
    await s.keys('\x19');
    expect(s.editor.line).toBe('curl -I http://web:8080/health');
    await s.keys('\x01', RIGHT.repeat(5), '\x0b');
    expect(s.editor.line).toBe('curl ');
    await s.keys('\x05', 'X', '\x01', '\x15');
    expect(s.editor.line).toBe('curl X');
    await s.keys('\x05', '\x15');
    expect(s.editor.line).toBe('');
    expect(s.rows()).toEqual(['$ ']);
  });

  it('submits on Enter, keeps history, walks it with ↑/↓ and restores the draft', async () => {
    const history = new History();
    const s = await new Screen(40, 10, history).start();
    await s.keys('free -m', '\r');
    expect(s.events).toEqual([{ kind: 'submit', line: 'free -m' }]);
    expect(s.editor.editing).toBe(false);
    s.editor.start(PROMPT);
    await s.keys('df -h', '\r');
    s.editor.start(PROMPT);
    await s.keys('dra', UP);
    expect(s.editor.line).toBe('df -h');
    await s.keys(UP);
    expect(s.editor.line).toBe('free -m');
    await s.keys(UP);
    expect(s.editor.line).toBe('free -m');
    await s.keys(DOWN, DOWN);
    expect(s.editor.line).toBe('dra');
    expect(history.toJSON()).toEqual(['free -m', 'df -h']);
  });

  it('bounds history and skips blanks and repeats', () => {
    const h = new History([], 3);
    for (const l of ['a', 'a', ' ', 'b', 'c', 'd']) h.add(l);
    expect(h.toJSON()).toEqual(['b', 'c', 'd']);
    expect(new History(['x', 7 as unknown as string, ''], 5).toJSON()).toEqual(['x']);
  });

  it('refuses a multi-line paste, bracketed or not, and types a one-line paste', async () => {
    const s = await new Screen(80).start();
    await s.keys('\x1b[200~ls\rrm -rf /\r\x1b[201~');
    expect(s.editor.line).toBe('');
    expect(s.events).toEqual([]);
    expect(s.rows().join('\n')).toMatch(/refused a paste of 2 lines/);
    await s.keys('free -m\rdf -h\r');
    expect(s.events).toEqual([]);
    expect(s.editor.line).toBe('');
    await s.keys('\x1b[200~df -h\r\x1b[201~');
    expect(s.editor.line).toBe('df -h');
    expect(s.events).toEqual([]);
    // Markers split across chunks.
    await s.keys('\x15', '\x1b[20', '0~a\rb', '\x1b[201~');
    expect(s.editor.line).toBe('');
  });

  it('abandons the line on Ctrl+C and reports eof on Ctrl+D only when empty', async () => {
    const s = await new Screen(40).start();
    await s.keys('jst', '\x03');
    expect(s.events).toEqual([{ kind: 'cancel' }]);
    expect(s.rows()).toEqual(['$ jst^C']);
    s.editor.start(PROMPT);
    await s.keys('ab', LEFT, '\x04');
    expect(s.editor.line).toBe('a');
    await s.keys('\x15', '\x04');
    expect(s.events[1]).toEqual({ kind: 'eof' });
  });

  it('reassembles an escape sequence split across chunks', async () => {
    const s = await new Screen(40).start();
    await s.keys('abc', '\x1b', '[D', 'X');
    expect(s.editor.line).toBe('abXc');
  });

  it('prints messages above the line being edited', async () => {
    const s = await new Screen(40).start();
    await s.keys('free');
    s.editor.printAbove('note\r\n');
    await s.flush();
    expect(s.rows()).toEqual(['note', '$ free']);
    expect(s.cursor).toEqual([1, 6]);
  });

  it('counts cells of wide characters and skips colour codes in the prompt', () => {
    expect(cellWidth('abc')).toBe(3);
    expect(cellWidth('日本')).toBe(4);
    expect(visibleWidth('\x1b[1;32mdana\x1b[0m $ ')).toBe(7);
  });
});

const ALLOWED: AllowedCommand[] = [
  { rule: 'dev-jstack', program: 'jstack', usage: 'jstack [-l] <pid>', description: 'Thread dump', flags: [{ name: '-l', description: 'locks' }] },
  { rule: 'dev-jmap', program: 'jmap', usage: 'jmap -histo <pid>', flags: [{ name: '-histo' }] },
  { rule: 'dev-jmap-live', program: 'jmap', usage: 'jmap -histo:live <pid>', flags: [{ name: '-histo:live' }] },
  {
    rule: 'dev-curl',
    program: 'curl',
    usage: 'curl [-I] [-m <integer(1..30)>] <url>',
    flags: [
      { name: '-I', description: 'headers only' },
      { name: '-m', takes_value: true, value_type: 'integer(1..30)', description: 'maximum time' },
    ],
  },
  { rule: 'dev-dig', program: 'dig', usage: 'dig <name> [A|MX]', subcommands: ['A', 'MX'] },
];

describe('completion', () => {
  it('completes program names on the first word', () => {
    const c = complete(ALLOWED, 'j', 1);
    expect(c.from).toBe(0);
    // Every program, once, with its first rule's description; the editor filters by the prefix.
    expect(c.candidates.map((x) => x.value)).toEqual(['jstack', 'jmap', 'curl', 'dig']);
    expect(c.candidates[0].description).toBe('Thread dump');
  });

  it('offers a program\'s flags and subcommands, without the ones already used', () => {
    expect(complete(ALLOWED, 'jmap -', 6).candidates.map((x) => x.value)).toEqual(['-histo', '-histo:live']);
    expect(complete(ALLOWED, 'curl -I ', 8).candidates.map((x) => x.value)).toEqual(['-m']);
    expect(complete(ALLOWED, 'dig example.org ', 16).candidates.map((x) => x.value)).toEqual(['A', 'MX']);
  });

  it('hints at the value a flag takes, and at unknown programs', () => {
    const c = complete(ALLOWED, 'curl -m ', 8);
    expect(c.candidates).toEqual([]);
    expect(c.hint).toBe('-m <integer(1..30)>: maximum time');
    expect(complete(ALLOWED, 'bash ', 5).hint).toMatch(/no such program/);
  });

  it('drives the editor: one match inserts, a common prefix extends, several are listed', async () => {
    const s = await new Screen(60, 12, new History(), ALLOWED).start();
    await s.keys('jst', '\t');
    expect(s.editor.line).toBe('jstack ');
    await s.keys('\x15', 'jmap -h', '\t');
    expect(s.editor.line).toBe('jmap -histo');
    await s.keys('\t');
    expect(s.rows().join('\n')).toMatch(/-histo\s*\n\s*-histo:live/);
    expect(s.editor.line).toBe('jmap -histo');
    await s.keys('\x15', 'curl -m ', '\t');
    expect(s.rows().join('\n')).toMatch(/-m <integer\(1\.\.30\)>: maximum time/);
    expect(s.editor.line).toBe('curl -m ');
  });

  it('applies fetched candidates when they arrive, unless the line changed meanwhile', async () => {
    let answer: (c: Completion) => void = () => {};
    const s = await new Screen(60, 12).start();
    s.editor.setCompleter((line) => ({
      from: line.lastIndexOf(' ') + 1,
      candidates: [],
      pending: new Promise<Completion>((r) => (answer = r)),
    }));
    const listing = (from: number): Completion => ({
      from,
      candidates: [
        { value: '/var/log/app/archive/', display: 'archive/', partial: true },
        { value: '/var/log/app/b.log', display: 'b.log' },
      ],
    });
    // One match: a folder completes without a space, so Tab can go on.
    await s.keys('cat /var/log/app/ar', '\t');
    expect(s.editor.line).toBe('cat /var/log/app/ar');
    answer(listing(4));
    await new Promise((r) => setTimeout(r, 0));
    await s.flush();
    expect(s.editor.line).toBe('cat /var/log/app/archive/');
    // Several: listed by their own names.
    await s.keys('\x15', 'cat /var/log/app/', '\t');
    answer(listing(4));
    await new Promise((r) => setTimeout(r, 0));
    await s.flush();
    expect(s.rows().join('\n')).toMatch(/archive\/\s*\n\s*b\.log/);
    expect(s.rows().join('\n')).not.toMatch(/\/var\/log\/app\/b\.log/);
    // Typed on before the answer: it is dropped.
    await s.keys('\x15', 'cat /var/log/app/ar', '\t', 'x');
    answer(listing(4));
    await new Promise((r) => setTimeout(r, 0));
    await s.flush();
    expect(s.editor.line).toBe('cat /var/log/app/arx');
  });
});
