// The command line of the terminal page: readline-style editing drawn with ANSI sequences on
// a terminal of a given width. It knows nothing of xterm or WebSockets: input is what the
// terminal reports as typed (xterm's onData), output goes to a write function, so the editing
// rules are unit tested without a browser.
//
// Keys: printable text inserts; Backspace/Delete; Left/Right (Ctrl/Alt for words); Home/End;
// Ctrl+A/E (start/end), Ctrl+B/F (left/right), Ctrl+U/K (cut to start/end), Ctrl+W (cut the
// word before), Ctrl+Y (paste the last cut); Up/Down (and Ctrl+P/N) walk the history; Tab
// completes; Ctrl+C abandons the line; Ctrl+L clears the screen; Enter submits. A paste that
// holds more than one line is refused with a message (each command is authorized and recorded
// on its own); one trailing newline is dropped.

import { t } from './i18n';

export interface Candidate {
  value: string;
  description?: string;
  // Listed instead of the value (a directory entry's own name rather than its whole path).
  display?: string;
  // Completing to it adds no space: more may follow (a directory, "/var/log/").
  partial?: boolean;
}
export interface Completion {
  // Where the replaced word starts in the line (the word runs to the cursor).
  from: number;
  // Whole words that may replace line[from, cursor).
  candidates: Candidate[];
  // Shown when there is nothing to complete, e.g. the command's usage.
  hint?: string;
  // Candidates that must be fetched first (a directory's listing, the JVMs' pids): applied when
  // they arrive, unless the line or the cursor changed meanwhile.
  pending?: Promise<Completion>;
}
export type Completer = (line: string, cursor: number) => Completion;

export type EditorEvent =
  | { kind: 'submit'; line: string }
  | { kind: 'cancel' }
  | { kind: 'eof' };

// The history of one target, newest last, bounded, without consecutive duplicates.
export class History {
  private entries: string[];
  constructor(
    initial: string[] = [],
    readonly limit = 500,
  ) {
    this.entries = initial.filter((e) => typeof e === 'string' && e.length > 0).slice(-limit);
  }
  add(line: string): void {
    if (line.trim() === '' || this.entries[this.entries.length - 1] === line) return;
    this.entries.push(line);
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
  }
  get(i: number): string {
    return this.entries[i];
  }
  get length(): number {
    return this.entries.length;
  }
  toJSON(): string[] {
    return [...this.entries];
  }
}

// Terminal cells a string takes: wide East Asian characters and most emoji take two, combining
// marks none. Good enough for a command line; xterm uses the same Unicode 6 widths by default.
export function cellWidth(s: string): number {
  let w = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || (c >= 0x7f && c < 0xa0)) continue;
    if ((c >= 0x300 && c <= 0x36f) || (c >= 0x200b && c <= 0x200f)) continue;
    if (
      (c >= 0x1100 && c <= 0x115f) ||
      (c >= 0x2e80 && c <= 0xa4cf) ||
      (c >= 0xac00 && c <= 0xd7a3) ||
      (c >= 0xf900 && c <= 0xfaff) ||
      (c >= 0xfe30 && c <= 0xfe4f) ||
      (c >= 0xff00 && c <= 0xff60) ||
      (c >= 0xffe0 && c <= 0xffe6) ||
      (c >= 0x1f300 && c <= 0x1f64f) ||
      (c >= 0x1f900 && c <= 0x1f9ff) ||
      (c >= 0x20000 && c <= 0x3fffd)
    ) {
      w += 2;
    } else {
      w += 1;
    }
  }
  return w;
}

// The visible width of a prompt that may hold SGR colour sequences.
export function visibleWidth(s: string): number {
  // eslint-disable-next-line no-control-regex
  return cellWidth(s.replace(/\x1b\[[0-9;]*m/g, ''));
}

const kMaxLine = 16384;

export class LineEditor {
  // The line as code points, so that the cursor never splits a surrogate pair.
  private chars: string[] = [];
  private cursor = 0;
  private promptText = '';
  private promptWidth = 0;
  // How many rows below the prompt's first row the terminal's cursor is.
  private cursorRow = 0;
  private active = false;
  private historyIndex = 0;
  private draft = '';
  private killed = '';
  private pasting: string | null = null;
  private pending = '';

  constructor(
    private readonly write: (s: string) => void,
    private readonly cols: () => number,
    private history: History = new History(),
    private completer: Completer | null = null,
  ) {}

  get line(): string {
    return this.chars.join('');
  }
  get cursorIndex(): number {
    return this.cursor;
  }
  get editing(): boolean {
    return this.active;
  }

  setHistory(h: History): void {
    this.history = h;
    this.historyIndex = h.length;
  }
  setCompleter(c: Completer | null): void {
    this.completer = c;
  }

  // Starts a new line after `prompt` (which may hold colour sequences).
  start(prompt: string, initial = ''): void {
    this.promptText = prompt;
    this.promptWidth = visibleWidth(prompt);
    this.chars = [...initial];
    this.cursor = this.chars.length;
    this.cursorRow = 0;
    this.historyIndex = this.history.length;
    this.draft = '';
    this.active = true;
    this.render();
  }

  // Stops editing; the line stays on screen and the cursor moves below it.
  stop(): void {
    if (!this.active) return;
    this.moveToEnd();
    this.write('\r\n');
    this.active = false;
    this.cursorRow = 0;
  }

  // Prints text above the line being edited (a message that arrives while the user types).
  printAbove(text: string): void {
    if (!this.active) {
      this.write(text);
      return;
    }
    this.clearFromPrompt();
    this.write(text);
    this.cursorRow = 0;
    this.render();
  }

  // The terminal changed width: xterm reflows wrapped rows, so the cursor's row is recomputed.
  resized(): void {
    if (!this.active) return;
    const cols = Math.max(1, this.cols());
    const at = this.promptWidth + cellWidth(this.chars.slice(0, this.cursor).join(''));
    this.cursorRow = Math.floor(at / cols);
    this.render();
  }

  // Feeds what the terminal reported as typed. Returns the events it completes.
  feed(data: string): EditorEvent[] {
    const events: EditorEvent[] = [];
    // Several lines in one chunk without bracketed-paste markers are a paste, not typing.
    if (this.pasting === null && !this.pending && data.length > 1 && !data.includes('\x1b') &&
        /[\r\n]/.test(data.replace(/[\r\n]+$/, ''))) {
      this.paste(data);
      return events;
    }
    const s = this.pending + data;
    this.pending = '';
    let i = 0;
    while (i < s.length) {
      if (this.pasting !== null) {
        const end = s.indexOf('\x1b[201~', i);
        if (end < 0) {
          this.pasting += s.slice(i);
          if (this.pasting.length > 1 << 20) this.pasting = this.pasting.slice(0, 1 << 20);
          return events;
        }
        this.pasting += s.slice(i, end);
        i = end + 6;
        const text = this.pasting;
        this.pasting = null;
        this.paste(text);
        continue;
      }
      const c = s[i];
      if (c === '\x1b') {
        const seq = readEscape(s, i);
        if (seq === null) {
          this.pending = s.slice(i);
          return events;
        }
        i += seq.length;
        this.escape(seq);
        continue;
      }
      if (c === '\r' || c === '\n') {
        i++;
        if (c === '\r' && s[i] === '\n') i++;
        if (!this.active) continue;
        const line = this.line;
        this.stop();
        this.history.add(line);
        events.push({ kind: 'submit', line });
        continue;
      }
      if (c < ' ' || c === '\x7f') {
        i++;
        const ev = this.control(c);
        if (ev) events.push(ev);
        continue;
      }
      // A run of printable text.
      let j = i;
      while (j < s.length && s[j] >= ' ' && s[j] !== '\x7f' && s[j] !== '\x1b') j++;
      this.insert(s.slice(i, j));
      i = j;
    }
    return events;
  }

  private paste(text: string): void {
    if (!this.active) return;
    const body = text.replace(/\r\n/g, '\n').replace(/\r/g, '\n').replace(/\n$/, '');
    if (body.includes('\n')) {
      const lines = body.split('\n').length;
      this.printAbove(
`\x1b[33m${t('paste.refused', { lines })}\x1b[0m\r\n`,
      );
      return;
    }
    // eslint-disable-next-line no-control-regex
    this.insert(body.replace(/[\x00-\x1f\x7f]/g, ' '));
  }

  private insert(text: string): void {
    if (!this.active || text === '') return;
    const add = [...text];
    if (this.chars.length + add.length > kMaxLine) {
      this.bell();
      return;
    }
    this.chars.splice(this.cursor, 0, ...add);
    this.cursor += add.length;
    this.render();
  }

  private control(c: string): EditorEvent | null {
    if (!this.active) return null;
    switch (c) {
      case '\x03': {
        // Ctrl+C: show it, abandon the line.
        this.moveToEnd();
        this.write('^C');
        this.stop();
        return { kind: 'cancel' };
      }
      case '\x04':
        if (this.chars.length === 0) return { kind: 'eof' };
        this.deleteForward();
        return null;
      case '\x7f':
      case '\x08':
        if (this.cursor > 0) {
          this.chars.splice(this.cursor - 1, 1);
          this.cursor--;
          this.render();
        }
        return null;
      case '\x01':
        this.setCursor(0);
        return null;
      case '\x05':
        this.setCursor(this.chars.length);
        return null;
      case '\x02':
        this.setCursor(this.cursor - 1);
        return null;
      case '\x06':
        this.setCursor(this.cursor + 1);
        return null;
      case '\x15':
        this.cut(0, this.cursor);
        return null;
      case '\x0b':
        this.cut(this.cursor, this.chars.length);
        return null;
      case '\x17':
        this.cut(this.wordStartBefore(this.cursor, /\s/), this.cursor);
        return null;
      case '\x19':
        this.insert(this.killed);
        return null;
      case '\x10':
        this.historyMove(-1);
        return null;
      case '\x0e':
        this.historyMove(1);
        return null;
      case '\x0c':
        this.write('\x1b[H\x1b[2J');
        this.cursorRow = 0;
        this.render();
        return null;
      case '\t':
        this.complete();
        return null;
      default:
        return null;
    }
  }

  private escape(seq: string): void {
    if (seq === '\x1b[200~') {
      this.pasting = '';
      return;
    }
    if (!this.active) return;
    switch (seq) {
      case '\x1b[D':
      case '\x1bOD':
        this.setCursor(this.cursor - 1);
        return;
      case '\x1b[C':
      case '\x1bOC':
        this.setCursor(this.cursor + 1);
        return;
      case '\x1b[A':
      case '\x1bOA':
        this.historyMove(-1);
        return;
      case '\x1b[B':
      case '\x1bOB':
        this.historyMove(1);
        return;
      case '\x1b[H':
      case '\x1bOH':
      case '\x1b[1~':
      case '\x1b[7~':
        this.setCursor(0);
        return;
      case '\x1b[F':
      case '\x1bOF':
      case '\x1b[4~':
      case '\x1b[8~':
        this.setCursor(this.chars.length);
        return;
      case '\x1b[3~':
        this.deleteForward();
        return;
      case '\x1b[1;5D':
      case '\x1b[1;3D':
      case '\x1bb':
        this.setCursor(this.wordStartBefore(this.cursor, /[\s/=.,:-]/));
        return;
      case '\x1b[1;5C':
      case '\x1b[1;3C':
      case '\x1bf':
        this.setCursor(this.wordEndAfter(this.cursor));
        return;
      case '\x1b\x7f':
        this.cut(this.wordStartBefore(this.cursor, /[\s/=.,:-]/), this.cursor);
        return;
      case '\x1bd':
        this.cut(this.cursor, this.wordEndAfter(this.cursor));
        return;
      default:
        return;
    }
  }

  private deleteForward(): void {
    if (this.cursor < this.chars.length) {
      this.chars.splice(this.cursor, 1);
      this.render();
    }
  }

  private cut(from: number, to: number): void {
    if (to <= from) return;
    this.killed = this.chars.slice(from, to).join('');
    this.chars.splice(from, to - from);
    this.cursor = from;
    this.render();
  }

  private wordStartBefore(pos: number, sep: RegExp): number {
    let i = pos;
    while (i > 0 && sep.test(this.chars[i - 1])) i--;
    while (i > 0 && !sep.test(this.chars[i - 1])) i--;
    return i;
  }

  private wordEndAfter(pos: number): number {
    const sep = /[\s/=.,:-]/;
    let i = pos;
    while (i < this.chars.length && sep.test(this.chars[i])) i++;
    while (i < this.chars.length && !sep.test(this.chars[i])) i++;
    return i;
  }

  private setCursor(pos: number): void {
    const p = Math.max(0, Math.min(this.chars.length, pos));
    if (p === this.cursor) return;
    this.cursor = p;
    this.placeCursor();
  }

  private historyMove(delta: number): void {
    const next = this.historyIndex + delta;
    if (next < 0 || next > this.history.length) {
      this.bell();
      return;
    }
    if (this.historyIndex === this.history.length) this.draft = this.line;
    this.historyIndex = next;
    const text = next === this.history.length ? this.draft : this.history.get(next);
    this.chars = [...text];
    this.cursor = this.chars.length;
    this.render();
  }

  private complete(): void {
    if (!this.completer) {
      this.bell();
      return;
    }
    const line = this.line;
    const cursorOffset = this.chars.slice(0, this.cursor).join('').length;
    const result = this.completer(line, cursorOffset);
    if (result.pending) {
      const cursor = this.cursor;
      result.pending.then(
        (fetched) => {
          if (this.active && this.line === line && this.cursor === cursor) {
            this.applyCompletion(fetched, line, cursorOffset);
          }
        },
        () => {},
      );
      return;
    }
    this.applyCompletion(result, line, cursorOffset);
  }

  private applyCompletion(result: Completion, line: string, cursorOffset: number): void {
    const word = line.slice(result.from, cursorOffset);
    const matches = result.candidates.filter((c) => c.value.startsWith(word));
    if (matches.length === 0) {
      if (result.hint) this.printAbove(`\x1b[2m${result.hint}\x1b[0m\r\n`);
      else this.bell();
      return;
    }
    if (matches.length === 1) {
      const rest = matches[0].value.slice(word.length);
      const after = this.chars.slice(this.cursor).join('');
      this.insert(rest + (matches[0].partial || after.startsWith(' ') ? '' : ' '));
      return;
    }
    const prefix = commonPrefix(matches.map((m) => m.value));
    if (prefix.length > word.length) {
      this.insert(prefix.slice(word.length));
      return;
    }
    this.printAbove(formatCandidates(matches, this.cols()));
  }

  private bell(): void {
    this.write('\x07');
  }

  // Erases everything from the prompt's first row down, leaving the cursor there.
  private clearFromPrompt(): void {
    let out = '';
    if (this.cursorRow > 0) out += `\x1b[${this.cursorRow}A`;
    out += '\r\x1b[J';
    this.write(out);
    this.cursorRow = 0;
  }

  private moveToEnd(): void {
    this.cursor = this.chars.length;
    this.placeCursor();
  }

  // Redraws the prompt and the line, then puts the cursor where it belongs.
  private render(): void {
    if (!this.active) return;
    const cols = Math.max(1, this.cols());
    let out = '';
    if (this.cursorRow > 0) out += `\x1b[${this.cursorRow}A`;
    out += '\r\x1b[J' + this.promptText + this.line;
    const total = this.promptWidth + cellWidth(this.line);
    // A line that ends exactly at the right margin leaves the terminal's cursor waiting to wrap;
    // writing a space and erasing it moves the cursor to the next row, where the maths has it.
    if (total > 0 && total % cols === 0) out += ' \r\x1b[K';
    this.cursorRow = Math.floor(total / cols);
    this.write(out);
    this.placeCursor();
  }

  private placeCursor(): void {
    const cols = Math.max(1, this.cols());
    const at = this.promptWidth + cellWidth(this.chars.slice(0, this.cursor).join(''));
    const row = Math.floor(at / cols);
    const col = at % cols;
    let out = '';
    if (row < this.cursorRow) out += `\x1b[${this.cursorRow - row}A`;
    if (row > this.cursorRow) out += `\x1b[${row - this.cursorRow}B`;
    out += '\r';
    if (col > 0) out += `\x1b[${col}C`;
    this.cursorRow = row;
    this.write(out);
  }
}

// Reads one escape sequence at s[i] (which is ESC). Returns null when the sequence is cut
// short at the end of the chunk (the rest arrives with the next chunk).
function readEscape(s: string, i: number): string | null {
  if (i + 1 >= s.length) return null;
  const c = s[i + 1];
  if (c === '[') {
    let j = i + 2;
    while (j < s.length && !(s.charCodeAt(j) >= 0x40 && s.charCodeAt(j) <= 0x7e)) j++;
    if (j >= s.length) return null;
    return s.slice(i, j + 1);
  }
  if (c === 'O') {
    if (i + 2 >= s.length) return null;
    return s.slice(i, i + 3);
  }
  return s.slice(i, i + 2);
}

export function commonPrefix(values: string[]): string {
  if (values.length === 0) return '';
  let p = values[0];
  for (const v of values) {
    let k = 0;
    while (k < p.length && k < v.length && p[k] === v[k]) k++;
    p = p.slice(0, k);
  }
  return p;
}

function formatCandidates(items: Candidate[], cols: number): string {
  const shown = (m: Candidate) => m.display ?? m.value;
  const width = Math.max(...items.map((m) => cellWidth(shown(m))));
  let out = '';
  for (const m of items.slice(0, 50)) {
    let row = `  \x1b[1m${shown(m)}\x1b[0m`;
    if (m.description) {
      const room = cols - width - 6;
      const d = room > 10 && m.description.length > room ? m.description.slice(0, room - 1) + '…' : m.description;
      row += ' '.repeat(width - cellWidth(shown(m)) + 2) + `\x1b[2m${d}\x1b[0m`;
    }
    out += row + '\r\n';
  }
  if (items.length > 50) out += `  ${t('complete.more', { n: items.length - 50 })}\r\n`;
  return out;
}
