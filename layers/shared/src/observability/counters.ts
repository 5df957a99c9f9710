/** Monotonic named counters: what was received, written, rejected and retried, for status and metrics. */
export class Counters<K extends string = string> {
  private readonly values = new Map<K, number>();

  add(name: K, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  get(name: K): number {
    return this.values.get(name) ?? 0;
  }

  snapshot(): Readonly<Record<string, number>> {
    return Object.fromEntries(this.values);
  }
}
