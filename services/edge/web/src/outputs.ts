// Each command's output as the command wrote it, kept so that it can be copied or downloaded
// whole: the terminal's scrollback holds only so many rows, and redraws what it shows. Bounded:
// the newest kMaxKeptCommands commands and kMaxKeptBytes in all; a command alone larger than
// that keeps its first kMaxKeptBytes and says so.

export const kMaxKeptCommands = 50;
export const kMaxKeptBytes = 64 * 1024 * 1024;

export interface KeptOutput {
  id: string;
  line: string;
  // stdout and stderr in the order they arrived, bytes as written.
  chunks: Uint8Array[];
  bytes: number;
  // Bytes that arrived but were not kept (the command alone was over kMaxKeptBytes).
  dropped: number;
  done: boolean;
}

export class OutputStore {
  private readonly kept: KeptOutput[] = [];
  private total = 0;

  constructor(
    private readonly maxCommands = kMaxKeptCommands,
    private readonly maxBytes = kMaxKeptBytes,
  ) {}

  begin(id: string, line: string): void {
    this.kept.push({ id, line, chunks: [], bytes: 0, dropped: 0, done: false });
    this.evict();
  }

  append(id: string, data: Uint8Array): void {
    const k = this.find(id);
    if (!k || data.length === 0) return;
    // Older commands make room first; what is still over the budget is dropped.
    this.total += data.length;
    this.evict(k);
    const over = Math.max(0, this.total - this.maxBytes);
    const keep = data.length - Math.min(over, data.length);
    if (keep < data.length) {
      k.dropped += data.length - keep;
      this.total -= data.length - keep;
    }
    if (keep > 0) {
      // A copy: the connection may reuse its buffer.
      k.chunks.push(data.slice(0, keep));
      k.bytes += keep;
    }
  }

  end(id: string): void {
    const k = this.find(id);
    if (k) k.done = true;
  }

  find(id: string): KeptOutput | undefined {
    return this.kept.find((k) => k.id === id);
  }

  // The newest finished command, if any is kept.
  last(): KeptOutput | undefined {
    for (let i = this.kept.length - 1; i >= 0; i--) if (this.kept[i].done) return this.kept[i];
    return undefined;
  }

  get size(): number {
    return this.kept.length;
  }

  get totalBytes(): number {
    return this.total;
  }

  // Drops the oldest commands (never `keep`) while there are too many or too many bytes.
  private evict(keep?: KeptOutput): void {
    while (this.kept.length > this.maxCommands || this.total > this.maxBytes) {
      const oldest = this.kept.findIndex((k) => k !== keep);
      if (oldest < 0) return;
      this.total -= this.kept[oldest].bytes;
      this.kept.splice(oldest, 1);
    }
  }
}

// All of a command's kept bytes in one array.
export function joinChunks(k: KeptOutput): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(k.bytes);
  let at = 0;
  for (const c of k.chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// A file name for a command's output: its words, safe for any file system, and when it ran:
// "jstack-1234-20261201-173500.txt".
export function outputFileName(line: string, when: Date): string {
  const words = line
    .trim()
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/(^|-)\.+/g, '$1') // no word starts with a dot: no "..", no hidden file
    .replace(/-+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 60);
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${when.getFullYear()}${p(when.getMonth() + 1)}${p(when.getDate())}-${p(when.getHours())}${p(when.getMinutes())}${p(when.getSeconds())}`;
  return `${words || 'output'}-${stamp}.txt`;
}

// "512 B", "12.3 KiB", "4.0 MiB".
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
