/** Waits that shutdown can cut short: a loop sleeping between retries ends at once when stopped. */
export class Sleeper {
  private readonly pending = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.pending.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.pending.add(done);
    });
  }

  /** Ends every wait now. */
  wakeAll(): void {
    for (const done of [...this.pending]) done();
  }
}
