// Shell-mode recordings: exec records a shell session as asciicast v2 (a JSON header line, then
// one [seconds, code, data] line per event: "o" output, "i" input, "r" resize "COLSxROWS") and
// stores it in SHELL_RECORDING audit events of up to 64 KiB, numbered from 0.

import { t } from './i18n';

export interface CastHeader {
  version: number;
  width: number;
  height: number;
  timestamp?: number;
  [key: string]: unknown;
}
export interface CastEvent {
  time: number;
  code: string;
  data: string;
}
export interface Cast {
  header: CastHeader;
  events: CastEvent[];
  // Lines that could not be read (a chunk lost to a strict-mode failure, say).
  skipped: number;
}

export function decodeBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Joins the chunks of one recording in sequence order. Missing numbers are reported.
export function joinChunks(chunks: { sequence: number; data: Uint8Array }[]): {
  text: string;
  missing: number[];
} {
  const sorted = [...chunks].sort((a, b) => a.sequence - b.sequence);
  const missing: number[] = [];
  let expect = 0;
  const parts: Uint8Array[] = [];
  for (const c of sorted) {
    if (c.sequence < expect) continue; // a duplicate
    for (; expect < c.sequence && missing.length < 100; expect++) missing.push(expect);
    expect = c.sequence + 1;
    parts.push(c.data);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return { text: new TextDecoder().decode(all), missing };
}

export function parseCast(text: string): Cast {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new Error(t('cast.empty'));
  let header: CastHeader;
  try {
    header = JSON.parse(lines[0]);
  } catch {
    throw new Error(t('cast.noHeader'));
  }
  if (header.version !== 2) throw new Error(t('cast.version', { version: String(header.version) }));
  const events: CastEvent[] = [];
  let skipped = 0;
  for (const line of lines.slice(1)) {
    try {
      const e = JSON.parse(line);
      if (Array.isArray(e) && typeof e[0] === 'number' && typeof e[1] === 'string' && typeof e[2] === 'string') {
        events.push({ time: e[0], code: e[1], data: e[2] });
      } else {
        skipped++;
      }
    } catch {
      skipped++;
    }
  }
  return { header, events, skipped };
}

// Where a player draws: output, size changes, and a clear screen for seeking back.
export interface CastSink {
  write(s: string): void;
  resize(cols: number, rows: number): void;
  reset?(): void;
}

// Plays a recording's output into a sink in real time (gaps capped at `maxGap` seconds) at a
// speed factor; pause, resume, seek and skip to the end. Positions are on the played timeline
// (capped gaps), which is what a progress bar shows.
export class CastPlayer {
  private index = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastTime = 0;
  // When each event plays, in seconds from the start (gaps capped).
  private readonly at: number[];
  speed = 1;
  // Called after each event is drawn, and after a seek.
  onProgress: (() => void) | null = null;

  constructor(
    private readonly cast: Cast,
    private readonly sink: CastSink,
    private readonly onEnd: () => void = () => {},
    private readonly maxGap = 2,
  ) {
    let t = 0;
    let last = 0;
    this.at = cast.events.map((e) => {
      t += Math.min(maxGap, Math.max(0, e.time - last));
      last = e.time;
      return t;
    });
  }

  // The played timeline's length and where the player is on it, in seconds.
  get duration(): number {
    return this.at.length ? this.at[this.at.length - 1] : 0;
  }
  get position(): number {
    return this.index === 0 ? 0 : this.at[this.index - 1];
  }

  get playing(): boolean {
    return this.timer !== null;
  }
  get done(): boolean {
    return this.index >= this.cast.events.length;
  }

  play(): void {
    if (this.timer || this.done) return;
    this.schedule();
  }

  pause(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  skipToEnd(): void {
    this.pause();
    while (!this.done) this.step();
    this.onEnd();
  }

  // The progress bar's end, a multiple of its 0.1 s step at or after the last event: rounding
  // the duration to the nearest tenth could put the bar's end before the last event, and seeking
  // to the end would then never reach it.
  static sliderMax(duration: number): number {
    return Math.max(0, Math.ceil(duration * 10 - 1e-9) / 10);
  }

  // Shows the screen as it was at `seconds` (from a cleared screen when going back, drawing
  // every event up to there at once) and goes on playing from there if it was playing.
  seek(seconds: number): void {
    const playing = this.playing;
    this.pause();
    if (this.index > 0 && seconds < this.position) {
      this.sink.reset?.();
      const { width, height } = this.cast.header;
      this.sink.resize(Math.min(500, width || 80), Math.min(200, height || 24));
      this.index = 0;
      this.lastTime = 0;
    }
    while (!this.done && this.at[this.index] <= seconds) this.step();
    this.onProgress?.();
    if (this.done) this.onEnd();
    else if (playing) this.schedule();
  }

  private schedule(): void {
    const next = this.cast.events[this.index];
    const gap = Math.min(this.maxGap, Math.max(0, next.time - this.lastTime));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.step();
      if (this.done) this.onEnd();
      else this.schedule();
    }, (gap * 1000) / this.speed);
  }

  private step(): void {
    const e = this.cast.events[this.index++];
    this.lastTime = e.time;
    if (e.code === 'o') {
      this.sink.write(e.data);
    } else if (e.code === 'r') {
      const m = /^(\d+)x(\d+)$/.exec(e.data);
      if (m) this.sink.resize(Math.min(500, Number(m[1])), Math.min(200, Number(m[2])));
    }
    this.onProgress?.();
  }
}
