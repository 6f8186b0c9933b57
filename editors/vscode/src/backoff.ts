/**
 * When to restart a server that exited: exponential backoff with a ceiling, reset
 * once a run has stayed up long enough, and a give-up after many quick crashes in a
 * row (a broken install would otherwise restart forever).
 */

export interface BackoffOptions {
  /** First delay, ms. */
  initialMs: number;
  /** Longest delay, ms. */
  maxMs: number;
  /** A run that lasted this long counts as healthy and resets the backoff. */
  stableMs: number;
  /** Consecutive quick crashes after which we stop restarting. */
  maxAttempts: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 1000,
  maxMs: 30_000,
  stableMs: 120_000,
  maxAttempts: 8,
};

export class RestartBackoff {
  private attempts = 0;
  private startedAt: number | undefined;

  constructor(private readonly options: BackoffOptions = DEFAULT_BACKOFF) {}

  /** Record that the server (re)started at `now` (ms). */
  started(now: number): void {
    this.startedAt = now;
  }

  /**
   * The server exited at `now`: the delay before restarting (ms), or undefined to give up.
   */
  nextDelay(now: number): number | undefined {
    if (this.startedAt !== undefined && now - this.startedAt >= this.options.stableMs) {
      this.attempts = 0;
    }
    this.startedAt = undefined;
    if (this.attempts >= this.options.maxAttempts) {
      return undefined;
    }
    const delay = Math.min(this.options.initialMs * 2 ** this.attempts, this.options.maxMs);
    this.attempts += 1;
    return delay;
  }

  /** Consecutive quick crashes so far. */
  get attemptCount(): number {
    return this.attempts;
  }

  /** Forget past crashes (the user asked for a restart). */
  reset(): void {
    this.attempts = 0;
    this.startedAt = undefined;
  }
}
