import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RestartBackoff } from '../src/backoff';

const options = { initialMs: 1000, maxMs: 8000, stableMs: 60_000, maxAttempts: 5 };

describe('RestartBackoff', () => {
  it('doubles the delay up to the ceiling, then gives up', () => {
    const backoff = new RestartBackoff(options);
    const delays: (number | undefined)[] = [];
    for (let i = 0; i < 6; i++) {
      backoff.started(i * 10);
      delays.push(backoff.nextDelay(i * 10 + 5));
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 8000, undefined]);
  });

  it('starts over after a run that stayed up', () => {
    const backoff = new RestartBackoff(options);
    backoff.started(0);
    assert.equal(backoff.nextDelay(10), 1000);
    backoff.started(20);
    assert.equal(backoff.nextDelay(30), 2000);
    backoff.started(100);
    assert.equal(backoff.nextDelay(100 + 60_000), 1000);
  });

  it('starts over when the user restarts', () => {
    const backoff = new RestartBackoff(options);
    backoff.nextDelay(0);
    backoff.nextDelay(0);
    assert.equal(backoff.attemptCount, 2);
    backoff.reset();
    assert.equal(backoff.nextDelay(0), 1000);
  });
});
