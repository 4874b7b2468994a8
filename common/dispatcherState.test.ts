import { describe, expect, it } from 'vitest';
import { type BackfillStateReport, type DispatcherStateReport, parseDispatcherState } from './dispatcherState.js';

const source = { slot: 'eventide_shop', publication: 'eventide_shop', phase: 'streaming', connected: true, lagBytes: 0 };
const serving = { state: 'serving', since: '2026-12-02T10:00:00Z', inflight: 0, backlog: 0, parking: false };
const running: BackfillStateReport = { trigger: 'shop/new-order', uid: 'uid-1', phase: 'Running', rowsRead: 500, rowsSent: 480, rowsEstimate: 1000, cursor: '500' };

/** A /state document with these backfills (`backfills` left out when undefined). */
const stateWith = (backfills?: unknown): unknown => ({
  source,
  configFingerprint: 'abc',
  triggers: { 'shop/new-order': serving },
  functions: {},
  ...(backfills !== undefined ? { backfills } : {}),
});

describe('parseDispatcherState', () => {
  it('reads a full document as it is', () => {
    const doc = stateWith({ 'shop/all-orders': running, 'shop/done': { ...running, phase: 'Complete', rowsRead: 1000, rowsSent: 990 } });
    expect(parseDispatcherState(doc)).toEqual(doc);
  });

  it('fills in what an older dispatcher leaves out: no fingerprint, functions or backfills', () => {
    const parsed: DispatcherStateReport = parseDispatcherState({ source, triggers: {} });
    expect(parsed).toEqual({ source, triggers: {}, configFingerprint: '', functions: {}, backfills: {} });
    expect(parseDispatcherState(stateWith(null)).backfills).toEqual({});
  });

  it('accepts every phase, an entry with only the required fields, and one of an invalid Backfill (empty trigger)', () => {
    const phases = ['Pending', 'Running', 'Complete', 'Failed', 'Cancelled'] as const;
    const backfills = Object.fromEntries(phases.map((phase) => [`shop/${phase.toLowerCase()}`, { trigger: 'shop/new-order', phase, rowsRead: 0, rowsSent: 0 }]));
    backfills['shop/invalid'] = { trigger: '', phase: 'Failed', rowsRead: 0, rowsSent: 0 };
    expect(Object.keys(parseDispatcherState(stateWith(backfills)).backfills!)).toEqual([...phases.map((p) => `shop/${p.toLowerCase()}`), 'shop/invalid']);
  });

  it.each([
    ['an unknown phase', { ...running, phase: 'Done' }, 'backfill shop/bad: phase must be one of Pending, Running, Complete, Failed, Cancelled'],
    ['a lower-case phase', { ...running, phase: 'running' }, 'backfill shop/bad: phase must be one of Pending, Running, Complete, Failed, Cancelled'],
    ['no phase', { trigger: 'shop/new-order', rowsRead: 0, rowsSent: 0 }, 'backfill shop/bad: phase must be one of Pending, Running, Complete, Failed, Cancelled'],
    ['rowsRead as a string', { ...running, rowsRead: '500' }, 'backfill shop/bad: rowsRead must be a number'],
    ['no rowsRead', { trigger: 'shop/new-order', phase: 'Pending', rowsSent: 0 }, 'backfill shop/bad: rowsRead must be a number'],
    ['rowsSent null', { ...running, rowsSent: null }, 'backfill shop/bad: rowsSent must be a number'],
    ['rowsEstimate as a string', { ...running, rowsEstimate: '1000' }, 'backfill shop/bad: rowsEstimate must be a number when present'],
    ['no trigger', { phase: 'Running', rowsRead: 0, rowsSent: 0 }, 'backfill shop/bad: trigger must be a string'],
    ['a trigger that is not a string', { ...running, trigger: { name: 'new-order' } }, 'backfill shop/bad: trigger must be a string'],
    ['an entry that is not an object', 'Running', 'backfill shop/bad: not an object'],
    ['a null entry', null, 'backfill shop/bad: not an object'],
    ['an array entry', [running], 'backfill shop/bad: not an object'],
  ])('throws naming the entry for %s', (_name, entry, message) => {
    // The good entry before it does not hide the bad one.
    expect(() => parseDispatcherState(stateWith({ 'shop/good': running, 'shop/bad': entry }))).toThrow(new Error(message));
  });

  it.each([
    ['a list', [running]],
    ['a string', 'none'],
  ])('throws when backfills is %s, not an object by name', (_name, backfills) => {
    expect(() => parseDispatcherState(stateWith(backfills))).toThrow('backfills must be an object keyed by namespace/name');
  });

  it('still checks triggers and the source as before', () => {
    expect(() => parseDispatcherState({ source, triggers: { 'shop/x': { ...serving, state: 'busy' } } })).toThrow('trigger shop/x: state must be one of serving, suspended, set-aside, waiting');
    expect(() => parseDispatcherState({ source: { slot: 's' }, triggers: {} })).toThrow('source: slot and lagBytes are required');
    expect(() => parseDispatcherState({ hello: 'world' })).toThrow('not a dispatcher state document');
    expect(() => parseDispatcherState(null)).toThrow('not a dispatcher state document');
  });
});
