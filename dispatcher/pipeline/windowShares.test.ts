import { describe, expect, it } from 'vitest';
import { fairShare, mayAdmit, type ShareState, WindowShares, type WindowState } from './windowShares.js';

const window = (over: Partial<WindowState> = {}): WindowState => ({ maxEvents: 100, maxBytes: 1000, heldEvents: 0, heldBytes: 0, triggers: 2, unmet: 0, ...over });
const share = (over: Partial<ShareState> = {}): ShareState => ({ held: 0, need: 10, ...over });

describe('mayAdmit', () => {
  const cases: { name: string; given: { share: ShareState; window: WindowState; bytes: number }; expect: boolean }[] = [
    { name: 'an empty window admits', given: { share: share(), window: window(), bytes: 10 }, expect: true },
    { name: 'within its fair share a trigger admits while the window has room', given: { share: share({ held: 49 }), window: window({ heldEvents: 60, unmet: 10 }), bytes: 1 }, expect: true },
    { name: 'a full window admits nothing', given: { share: share({ held: 10 }), window: window({ heldEvents: 100 }), bytes: 1 }, expect: false },
    { name: 'past its fair share a trigger borrows free room no sibling needs', given: { share: share({ held: 60 }), window: window({ heldEvents: 60, unmet: 10 }), bytes: 1 }, expect: true },
    {
      name: 'past its fair share it may not take the room a sibling needs for its working set',
      given: { share: share({ held: 89 }), window: window({ heldEvents: 90, unmet: 10 }), bytes: 1 },
      expect: false,
    },
    { name: 'bytes past the budget are refused', given: { share: share({ held: 1 }), window: window({ heldEvents: 1, heldBytes: 995 }), bytes: 10 }, expect: false },
    { name: 'an event larger than the byte budget passes when its trigger holds nothing', given: { share: share(), window: window({ heldEvents: 1, heldBytes: 10 }), bytes: 5000 }, expect: true },
  ];
  for (const c of cases) it(c.name, () => expect(mayAdmit(c.given.share, c.given.window, c.given.bytes)).toBe(c.expect));

  it('gives every trigger at least one event', () => {
    expect(fairShare(10, 50)).toBe(1);
    expect(fairShare(4000, 3)).toBe(1333);
  });
});

describe('WindowShares', () => {
  it('one trigger that cannot deliver fills at most what leaves its siblings their working set', () => {
    const shares = new WindowShares(100, 1_000_000);
    shares.configure(
      new Map([
        ['down', 20],
        ['healthy', 20],
      ]),
    );
    let admitted = 0;
    while (shares.tryAdmit('down', 1)) admitted++;
    expect(admitted).toBe(80);
    // The healthy sibling still gets its working set, and no more than the window.
    let healthy = 0;
    while (shares.tryAdmit('healthy', 1)) healthy++;
    expect(healthy).toBe(20);
    expect(shares.events).toBe(100);
    shares.release('down', 1);
    expect(shares.roomFor('healthy')).toBe(1);
  });

  it('alone, a trigger may use the whole window', () => {
    const shares = new WindowShares(50, 1_000_000);
    shares.configure(new Map([['only', 4]]));
    expect(shares.roomFor('only')).toBe(50);
    for (let i = 0; i < 50; i++) expect(shares.tryAdmit('only', 1)).toBe(true);
    expect(shares.tryAdmit('only', 1)).toBe(false);
  });
});
