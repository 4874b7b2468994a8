/**
 * Returns `text` flattened. A string built by concatenation is a tree of its pieces (a rope): an event's
 * JSON is some twenty-five of them, four times the memory of the flat text, and events wait in memory
 * (the window) long enough for the young generation's collector to copy every piece again and again.
 * Reading a character makes V8 flatten the tree in place, once (measured: 1,100 → 285 bytes retained
 * per event body, and the loop that built them 2× faster for the collections it no longer caused).
 */
export function flat(text: string): string {
  text.charCodeAt(0);
  return text;
}
