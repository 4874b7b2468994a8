import { describe, expect, it } from 'vitest';
import { InvalidResourceError, parseEventTrigger, parseFunction } from './validate.js';

function trigger(spec: Record<string, unknown>, name = 'new-order'): Record<string, unknown> {
  return {
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'shop' },
    spec: { source: { connectionSecretRef: { name: 'db' } }, table: { name: 'orders' }, sink: { url: 'http://127.0.0.1:1/' }, ...spec },
  };
}

/** The problems parseEventTrigger reports, failing the test if it accepts the manifest. */
function problemsOf(raw: Record<string, unknown>): string[] {
  try {
    parseEventTrigger(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidResourceError);
    return (error as InvalidResourceError).problems;
  }
  throw new Error('expected the manifest to be rejected');
}

describe('EventTrigger validation names each bad field and what it got', () => {
  it('a wrong type', () => {
    expect(problemsOf(trigger({ delivery: { retries: 'three' } }))).toEqual(['spec.delivery.retries: Expected integer, got "three"']);
  });

  it('an unknown enum value lists the allowed ones', () => {
    expect(problemsOf(trigger({ operations: ['insert', 'upsert'] }))).toEqual(['spec.operations[1]: must be one of insert, update, delete, truncate, got "upsert"']);
    expect(problemsOf(trigger({ ordering: 'fifo' }))).toEqual(['spec.ordering: must be one of key, none, got "fifo"']);
  });

  it('a missing required field is reported once, as missing', () => {
    const raw = trigger({});
    delete (raw.spec as Record<string, unknown>).table;
    expect(problemsOf(raw)).toEqual(['spec.table: required field is missing']);
  });

  it('a bad duration says what a duration looks like', () => {
    expect(problemsOf(trigger({ delivery: { timeout: '5 minutes' } }))).toEqual(['spec.delivery.timeout: must be a duration such as 500ms, 30s, 5m or 1h30m, got "5 minutes"']);
  });

  it('a suspend that is not a boolean (a quoted "true", or YAML 1.1 "yes")', () => {
    expect(problemsOf(trigger({ suspend: 'true' }))).toEqual(['spec.suspend: Expected boolean, got "true"']);
    expect(problemsOf(trigger({ suspend: 'yes' }))).toEqual(['spec.suspend: Expected boolean, got "yes"']);
    expect(problemsOf(trigger({ suspend: 1 }))).toEqual(['spec.suspend: Expected boolean, got 1']);
  });

  it('both function and sink', () => {
    expect(problemsOf(trigger({ function: { name: 'foo' } }))).toEqual(['exactly one of spec.function or spec.sink must be set']);
  });

  it('an unknown field (a typo that would otherwise drop the filter) is an error naming its path', () => {
    const problems = problemsOf(trigger({ filtr: 'new.total > 5', delivery: { backoff: { maxDelay: '1m', jitter: true } } }));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^spec\.filtr: unknown field \(known here: source, table, operations, columns, filter, /);
    expect(problems[1]).toMatch(/^spec\.delivery\.backoff\.jitter: unknown field \(known here: policy, delay, maxDelay\)$/);
  });

  it('a filter that does not compile: the expression and the column of the error', () => {
    expect(problemsOf(trigger({ filter: 'new.total >' }))).toEqual(['spec.filter: Unexpected token: EOF at column 12 of "new.total >"']);
    expect(problemsOf(trigger({ filter: 'new.status == "paid' }))).toEqual(['spec.filter: Unterminated string at column 15 of "new.status == \\"paid"']);
  });

  it('a multi-line filter: line and column', () => {
    // The third "=" of "===" is the 16th character of line 2.
    expect(problemsOf(trigger({ filter: 'new.total > 5 &&\n  new.status === "paid"' }))).toEqual([
      'spec.filter: Unexpected character: = at line 2, column 16 of "new.total > 5 &&\\n  new.status === \\"paid\\""',
    ]);
  });

  it('every problem at once, in the error message with the resource', () => {
    const error = (() => {
      try {
        parseEventTrigger(trigger({ operations: ['upsert'], concurrency: 0 }, 'Bad_Name'));
      } catch (e) {
        return e as Error;
      }
      throw new Error('accepted');
    })();
    expect(error.message).toMatch(/^EventTrigger shop\/Bad_Name is invalid: metadata\.name: must be a DNS-1123 label/);
    expect(error.message).toContain('spec.operations[0]: must be one of insert, update, delete, truncate, got "upsert"');
    expect(error.message).toContain('spec.concurrency: Expected integer to be greater or equal to 1, got 0');
  });

  it('a valid trigger passes with defaults, and open Kubernetes objects in a Function keep their fields', () => {
    expect(parseEventTrigger(trigger({ filter: 'new.total > 5' })).spec.delivery.retries).toBe(8);
    expect(parseEventTrigger(trigger({})).spec.suspend).toBe(false);
    expect(parseEventTrigger(trigger({ suspend: true })).spec.suspend).toBe(true);
    const fn = parseFunction({
      apiVersion: 'eventide.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: 'f' },
      spec: { image: 'img:1', env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }], resources: { limits: { cpu: '1' } } },
    });
    expect(fn.spec.env?.[0]).toEqual({ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } });
  });
});

describe('Function spec.scale', () => {
  const fn = (spec: Record<string, unknown>) => ({ apiVersion: 'eventide.dev/v1alpha1', kind: 'Function', metadata: { name: 'f' }, spec: { image: 'img:1', ...spec } });
  const problems = (raw: Record<string, unknown>) => {
    try {
      parseFunction(raw);
    } catch (error) {
      return (error as InvalidResourceError).problems;
    }
    throw new Error('expected the Function to be rejected');
  };

  it('fills in its defaults', () => {
    expect(parseFunction(fn({ scale: {} })).spec.scale).toEqual({ min: 0, max: 10, target: 10, scaleDownDelay: '30s', idleTimeout: '1m', activationTimeout: '2m' });
    expect(parseFunction(fn({})).spec.scale).toBeUndefined();
  });

  it('is exclusive with spec.replicas, needs min <= max, and durations', () => {
    expect(problems(fn({ replicas: 2, scale: {} }))).toEqual(['spec.replicas and spec.scale are exclusive: spec.scale lets eventide set the replicas from the demand; remove one of them']);
    expect(problems(fn({ scale: { min: 5, max: 2 } }))).toEqual(['spec.scale.min must not exceed spec.scale.max']);
    expect(problems(fn({ scale: { idleTimeout: 'soon' } }))[0]).toMatch(/^spec\.scale\.idleTimeout: /);
    expect(problems(fn({ scale: { target: 0 } }))).toEqual(['spec.scale.target: Expected integer to be greater or equal to 1, got 0']);
  });
});
