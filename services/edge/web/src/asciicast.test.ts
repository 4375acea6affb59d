// Shell recordings: chunks joined in order, gaps reported, bad input refused with a reason,
// playback timing honoured.

import { afterEach, describe, expect, it, vi } from 'vitest';

import { CastPlayer, decodeBase64, joinChunks, parseCast } from './asciicast';

const enc = (s: string) => new TextEncoder().encode(s);
const header = JSON.stringify({ version: 2, width: 100, height: 30 });

describe('recordings', () => {
  afterEach(() => vi.useRealTimers());

  it('joins chunks by sequence, drops duplicates and names missing parts', () => {
    const r = joinChunks([
      { sequence: 2, data: enc('c') },
      { sequence: 0, data: enc('a') },
      { sequence: 0, data: enc('a') },
      { sequence: 4, data: enc('e') },
    ]);
    expect(r.text).toBe('ace');
    expect(r.missing).toEqual([1, 3]);
  });

  it('decodes base64 (protobuf JSON bytes), multi-byte characters included', () => {
    const b64 = btoa(String.fromCharCode(...enc('héllo ✓')));
    expect(new TextDecoder().decode(decodeBase64(b64))).toBe('héllo ✓');
  });

  it('parses asciicast v2 and counts unreadable lines', () => {
    const cast = parseCast(`${header}\n[0.5, "o", "$ "]\nnot json\n[1.0, "i", "ls\\r"]\n[1.2, "r", "80x24"]\n[1, 2]\n`);
    expect(cast.header.width).toBe(100);
    expect(cast.events.map((e) => e.code)).toEqual(['o', 'i', 'r']);
    expect(cast.skipped).toBe(2);
  });

  it('refuses what is not a recording', () => {
    expect(() => parseCast('')).toThrow(/empty/);
    expect(() => parseCast('hello\n')).toThrow(/header/);
    expect(() => parseCast('{"version":1}\n')).toThrow(/version 1/);
  });

  it('plays output in time, caps long gaps, follows speed and resizes, and skips to the end', () => {
    vi.useFakeTimers();
    const cast = parseCast(`${header}\n[0.5, "o", "a"]\n[100.5, "o", "b"]\n[101.0, "r", "80x24"]\n[101.5, "i", "x"]\n[102.5, "o", "c"]\n`);
    const out: string[] = [];
    const sizes: string[] = [];
    let ended = 0;
    const p = new CastPlayer(cast, { write: (s) => out.push(s), resize: (c, r) => sizes.push(`${c}x${r}`) }, () => ended++);
    p.play();
    vi.advanceTimersByTime(499);
    expect(out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(out).toEqual(['a']);
    // A 100 s pause plays as 2 s.
    vi.advanceTimersByTime(2000);
    expect(out).toEqual(['a', 'b']);
    // The next event was scheduled at 1×; from then on at 2×: 0.5 s of recording in 250 ms.
    vi.advanceTimersByTime(500);
    expect(sizes).toEqual(['80x24']);
    p.speed = 2;
    vi.advanceTimersByTime(250);
    expect(out).toEqual(['a', 'b']);
    vi.advanceTimersByTime(250);
    p.pause();
    vi.advanceTimersByTime(10000);
    expect(out).toEqual(['a', 'b']);
    p.skipToEnd();
    expect(out).toEqual(['a', 'b', 'c']);
    expect(ended).toBe(1);
    expect(p.done).toBe(true);
  });

  it('seeks on the played timeline: forward draws what lies between, back starts from a cleared screen', () => {
    vi.useFakeTimers();
    // Played at 0.5, 2.5 (the 100 s gap capped at 2), 3.0 (resize), 3.5 (input, not drawn) and 4.5.
    const cast = parseCast(`${header}\n[0.5, "o", "a"]\n[100.5, "o", "b"]\n[101.0, "r", "80x24"]\n[101.5, "i", "x"]\n[102.5, "o", "c"]\n`);
    let screen = '';
    const sizes: string[] = [];
    let ended = 0;
    let progress = 0;
    const p = new CastPlayer(
      cast,
      { write: (s) => (screen += s), resize: (c, r) => sizes.push(`${c}x${r}`), reset: () => (screen = '') },
      () => ended++,
    );
    p.onProgress = () => progress++;
    expect(p.duration).toBe(4.5);
    expect(p.position).toBe(0);
    // Forward while paused: everything up to 3.0 at once, and it stays paused.
    p.seek(3);
    expect(screen).toBe('ab');
    expect(sizes).toEqual(['80x24']);
    expect(p.position).toBe(3);
    expect(p.playing).toBe(false);
    expect(progress).toBeGreaterThan(0);
    // Back: the screen is cleared and redrawn up to 1 s, at the recording's own size.
    p.seek(1);
    expect(screen).toBe('a');
    expect(sizes).toEqual(['80x24', '100x30']);
    expect(p.position).toBe(0.5);
    // Playing on from there: b comes 2 s later (the capped gap).
    p.play();
    vi.advanceTimersByTime(1999);
    expect(screen).toBe('a');
    vi.advanceTimersByTime(1);
    expect(screen).toBe('ab');
    // A seek while playing keeps playing from the new place; to the end, it ends.
    p.seek(0);
    expect(screen).toBe('');
    expect(p.playing).toBe(true);
    vi.advanceTimersByTime(500);
    expect(screen).toBe('a');
    p.seek(p.duration);
    expect(screen).toBe('abc');
    expect(p.done).toBe(true);
    expect(ended).toBe(1);
  });

  it("puts the progress bar's end at or after the last event, on its 0.1 s step", () => {
    // Rounded to the nearest tenth, 5.94 s would end the bar at 5.9, before the last event:
    // seeking to the bar's end would never end the replay.
    expect(CastPlayer.sliderMax(5.94)).toBe(6);
    expect(CastPlayer.sliderMax(5.96)).toBe(6);
    expect(CastPlayer.sliderMax(6)).toBe(6);
    expect(CastPlayer.sliderMax(4.5)).toBe(4.5);
    expect(CastPlayer.sliderMax(0)).toBe(0);
    expect(CastPlayer.sliderMax(0.01)).toBe(0.1);
    for (let ms = 0; ms < 20000; ms += 7) {
      const d = ms / 1000;
      const max = CastPlayer.sliderMax(d);
      expect(max).toBeGreaterThanOrEqual(d);
      expect(max - d).toBeLessThan(0.1);
      expect(Number(max.toFixed(1))).toBe(max);
    }
  });
});
