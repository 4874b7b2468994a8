import { describe, expect, it } from 'vitest';
import { rowChangeBody } from './pendingEvent.js';

describe('rowChangeBody', () => {
  it('writes the RowChange body around the rows as given, and hands back the rows as they sit in it', () => {
    const oldJson = '{"id":1,"note":"a \\"quoted\\" word, é"}';
    const newJson = '{"id":1,"note":"new"}';
    const body = rowChangeBody({
      op: 'update',
      schema: 'public',
      table: 'orders',
      oldJson,
      newJson,
      unchangedToastColumns: ['blob'],
      lsn: '0/16B3748',
      xid: 7,
      commitTime: '2026-12-02T10:00:00.000Z',
    });
    expect(JSON.parse(body.dataJson)).toEqual({
      op: 'update',
      table: { schema: 'public', name: 'orders' },
      old: { id: 1, note: 'a "quoted" word, é' },
      new: { id: 1, note: 'new' },
      unchangedToastColumns: ['blob'],
      lsn: '0/16B3748',
      xid: 7,
      commitTime: '2026-12-02T10:00:00.000Z',
    });
    expect(body.oldJson).toBe(oldJson);
    expect(body.newJson).toBe(newJson);
    const inserted = rowChangeBody({ op: 'insert', schema: 'public', table: 'orders', oldJson: null, newJson, lsn: '0/1', xid: 1, commitTime: 't' });
    expect([inserted.oldJson, inserted.newJson]).toEqual([null, newJson]);
    expect(JSON.parse(inserted.dataJson)).toMatchObject({ old: null, new: { id: 1, note: 'new' } });
  });
});
